// Command serveload puts `vsocklab serve` under the loads of issue 17 and
// prints what the clients saw, for BENCHMARKS.md:
//
//	serveload burst -uds S -n 1100          # n clients at once, each "CONNECT 10000\n"
//	serveload hold -uds S -n 1500 -for 15s  # n clients that never send their line
//	serveload sink -path S_10001 -bytes 1GiB # a log collector that discards
//
// It is a measuring tool, not part of the emulator.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: serveload burst|hold|sink [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	uds := fs.String("uds", "", "serve's socket")
	n := fs.Int("n", 1100, "clients")
	port := fs.Uint("port", 10000, "guest port to CONNECT to")
	hold := fs.Duration("for", 15*time.Second, "hold: how long to keep the idle clients")
	path := fs.String("path", "", "sink: socket path to listen on")
	total := fs.Int64("bytes", 1<<30, "sink: bytes to take before exiting")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "burst":
		burst(*uds, *n, *port)
	case "hold":
		holdIdle(*uds, *n, *port, *hold)
	case "sink":
		sink(*path, *total)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

// burst dials n clients, then releases all their CONNECT lines at once and
// counts the answers.
func burst(uds string, n int, port uint) {
	var mu sync.Mutex
	counts := map[string]int{}
	count := func(k string) { mu.Lock(); counts[k]++; mu.Unlock() }
	start := make(chan struct{})
	var dialed, done sync.WaitGroup
	conns := make([]net.Conn, n)
	for i := range n {
		dialed.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			c, err := net.Dial("unix", uds)
			dialed.Done()
			if err != nil {
				count("dial error: " + errText(err))
				return
			}
			conns[i] = c
			<-start
			fmt.Fprintf(c, "CONNECT %d\n", port)
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			switch {
			case err == nil && strings.HasPrefix(line, "OK "):
				count("OK")
			case errors.Is(err, io.EOF) && line == "":
				count("closed (EOF)")
			case err != nil:
				count("error: " + errText(err))
			default:
				count("other line: " + line)
			}
		}()
	}
	dialed.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	fmt.Printf("burst of %d in %v:", n, time.Since(t0).Round(time.Millisecond))
	for k, v := range counts {
		fmt.Printf(" %s=%d", k, v)
	}
	fmt.Println()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// holdIdle opens up to n clients that never send anything, holds them for
// d, then reports how many the server still holds open and whether a fresh
// client still gets its OK.
func holdIdle(uds string, n int, port uint, d time.Duration) {
	var conns []net.Conn
	var dialErr error
	for range n {
		c, err := net.DialTimeout("unix", uds, 2*time.Second)
		if err != nil {
			dialErr = err
			break
		}
		conns = append(conns, c)
	}
	fmt.Printf("connected %d of %d idle clients", len(conns), n)
	if dialErr != nil {
		fmt.Printf(" (then: %s)", errText(dialErr))
	}
	fmt.Println()
	time.Sleep(d)
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	fmt.Printf("after %v: %d still open (held by the server)\n", d, open)
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	c, err := net.DialTimeout("unix", uds, 2*time.Second)
	if err != nil {
		fmt.Printf("fresh client after release: %s\n", errText(err))
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %d\n", port)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Printf("fresh client after release: %s\n", errText(err))
		return
	}
	fmt.Printf("fresh client after release: %q\n", line)
}

// sink accepts connections on path and discards what they send until
// total bytes have arrived.
func sink(path string, total int64) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer ln.Close()
	var mu sync.Mutex
	var got int64
	doneCh := make(chan struct{})
	var once sync.Once
	t0 := time.Now()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					k, err := c.Read(buf)
					mu.Lock()
					got += int64(k)
					g := got
					mu.Unlock()
					if g >= total {
						once.Do(func() { close(doneCh) })
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	<-doneCh
	fmt.Printf("sink: %d bytes in %v\n", total, time.Since(t0).Round(time.Millisecond))
}

func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
