package emu_test

// Benchmarks through the whole core: guest socket, packets laid out in guest
// memory, the split virtqueues, the device, and the host's Unix socket
// buffers, with per-packet logging off. BenchmarkSocketpair64K is the
// yardstick: a real Unix socketpair moving the same 64 KiB writes, to be run
// in the same invocation (see BENCHMARKS.md).

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
)

const bulk = 64 * 1024

// benchWorld is a default world (firecracker-1.14, linux-6.12.68) keeping
// only world-level log records, so nothing is formatted per packet.
func benchWorld(b *testing.B) *emu.World {
	b.Helper()
	w := newWorld(b, emu.Config{})
	w.Eng.Log.Keep(engine.KindWorld)
	return w
}

// BenchmarkBulkGuestToHost64K: the guest sends 64 KiB (the device's whole
// 64 KiB credit: one packet of header + 32 KiB + 32 KiB), the device writes
// it to the host stream and returns the credit, the host reads it.
func BenchmarkBulkGuestToHost64K(b *testing.B) {
	w := benchWorld(b)
	s, hc := guestInitiated(b, w, 9000)
	data := pattern(bulk)
	sink := make([]byte, bulk)
	b.SetBytes(bulk)
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < bulk; {
			n, err := w.Guest.Send(s, data[off:], off > 0)
			if err != nil {
				b.Fatalf("send: %v after %d bytes", err, off)
			}
			off += n
			w.Settle()
		}
		for got := 0; got < bulk; {
			n, err := hc.Read(sink)
			if err != nil {
				b.Fatalf("host read: %v after %d bytes", err, got)
			}
			got += n
		}
	}
	if v := w.Dev.Stats().Violations; v != 0 {
		b.Fatalf("%d invariant violations", v)
	}
}

// BenchmarkBulkHostToGuest64K: the host writes 64 KiB, the device cuts it
// into RX buffers (3,776 bytes each for linux-6.12.68), the guest reads it
// and returns the credit with a CREDIT_UPDATE when it drained the queue.
func BenchmarkBulkHostToGuest64K(b *testing.B) {
	w := benchWorld(b)
	l := guestListen(b, w, 1234)
	hc, s, _ := hostInitiated(b, w, l)
	data := pattern(bulk)
	sink := make([]byte, bulk)
	b.SetBytes(bulk)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := hc.Write(data); err != nil || n != bulk {
			b.Fatalf("host write: %d, %v", n, err)
		}
		w.Settle()
		for got := 0; got < bulk; {
			n, err := w.Guest.Recv(s, sink, got > 0)
			if err != nil {
				b.Fatalf("recv: %v after %d bytes", err, got)
			}
			got += n
			w.Settle()
		}
	}
	if v := w.Dev.Stats().Violations; v != 0 {
		b.Fatalf("%d invariant violations", v)
	}
}

// BenchmarkSocketpair64K is the yardstick: 64 KiB writes into an AF_UNIX
// stream socketpair with a reader goroutine draining the other end.
func BenchmarkSocketpair64K(b *testing.B) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		c, err := net.FileConn(f)
		if err != nil {
			b.Fatal(err)
		}
		f.Close() // FileConn dups the descriptor
		return c
	}
	wr, rd := conn(fds[0], "writer"), conn(fds[1], "reader")
	defer wr.Close()
	defer rd.Close()
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, rd)
		done <- n
	}()
	data := pattern(bulk)
	b.SetBytes(bulk)
	b.ReportAllocs()
	var total int64
	for b.Loop() {
		if _, err := wr.Write(data); err != nil {
			b.Fatal(err)
		}
		total += bulk
	}
	wr.Close()
	if got := <-done; got != total { // the reader finished: the bytes arrived
		b.Fatalf("reader got %d of %d bytes", got, total)
	}
}

// BenchmarkOneBytePackets: 1-byte guest sends, each its own RW packet
// through the TX ring, the device and the host stream; one op is one packet.
// The world runs after every 64 sends (128 descriptors: half the TX ring),
// as a device thread runs alongside a writing guest, and the host drains its
// socket then. Reports packets per second.
func BenchmarkOneBytePackets(b *testing.B) {
	const batch = 64
	w := benchWorld(b)
	s, hc := guestInitiated(b, w, 9000)
	one := []byte{'x'}
	sink := make([]byte, 4096)
	txBefore := w.Dev.Stats().TXPackets
	flush := func(want int) {
		w.Settle()
		for got := 0; got < want; {
			n, err := hc.Read(sink)
			if err != nil {
				b.Fatalf("host read: %v", err)
			}
			got += n
		}
	}
	b.ReportAllocs()
	packets, unflushed := 0, 0
	for b.Loop() {
		if _, err := w.Guest.Send(s, one, false); err != nil {
			b.Fatalf("send: %v", err)
		}
		packets++
		if unflushed++; unflushed == batch {
			flush(unflushed)
			unflushed = 0
		}
	}
	flush(unflushed)
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "pkts/s")
	// Every send was its own RW (the device's CREDIT_UPDATEs go the other way).
	if got := w.Dev.Stats().TXPackets - txBefore; got != uint64(packets) {
		b.Fatalf("device took %d packets, want %d", got, packets)
	}
}

// BenchmarkTenThousandConnections measures the heap one established
// host-initiated connection costs: the guest's accepted socket and table
// entries, the device's connection, its port and the two ends of the host
// stream. A real device holds at most 1,023 connections (Firecracker
// MAX_CONNECTIONS, docs/sources.md#fc-muxer; a 1,024th host connection is closed at once),
// so 1x10000 raises the limit (emu.Config.MaxConnections, a lab-only
// setting); 10x1000 and 1x1023 stay within real devices' limit. The worlds'
// own memory (guest RAM, rings, buffers), taken before the first connection,
// is not counted.
func BenchmarkTenThousandConnections(b *testing.B) {
	b.Run("1x10000", func(b *testing.B) { benchConnections(b, 1, 10000, 10000) })
	b.Run("10x1000", func(b *testing.B) { benchConnections(b, 10, 1000, 0) })
	b.Run("1x1023", func(b *testing.B) { benchConnections(b, 1, 1023, 0) })
}

func benchConnections(b *testing.B, worlds, perWorld, limit int) {
	for b.Loop() {
		b.StopTimer()
		ws := make([]*emu.World, worlds)
		for i := range ws {
			ws[i] = newWorld(b, emu.Config{MaxConnections: limit})
			ws[i].Eng.Log.Keep(engine.KindWorld)
		}
		keep := make([]any, 0, 2*worlds*perWorld) // host ends and guest sockets
		before := liveHeap()
		b.StartTimer()
		for _, w := range ws {
			l := guestListen(b, w, 10000)
			for range perWorld {
				hc, child, _ := hostInitiated(b, w, l)
				keep = append(keep, hc, child)
			}
		}
		b.StopTimer()
		after := liveHeap()
		conns := 0
		for _, w := range ws {
			conns += len(w.Dev.Conns())
		}
		if conns != worlds*perWorld {
			b.Fatalf("%d connections established, want %d", conns, worlds*perWorld)
		}
		b.ReportMetric(float64(after-before)/float64(conns), "bytes/conn")
		runtime.KeepAlive(keep)
		runtime.KeepAlive(ws)
		b.StartTimer()
	}
}

// liveHeap is the live heap (HeapAlloc) after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
