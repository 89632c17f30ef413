package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

// Config describes a back-end.
type Config struct {
	// Socket is the vhost-user Unix socket the back-end listens on; QEMU
	// connects to it (-chardev socket,path=...). Empty: no listener, for
	// callers that hand ServeConn a connection of their own.
	Socket string
	// UDS is where the device serves Firecracker's hybrid vsock host side
	// on a real Unix socket: "CONNECT <port>\n" from host clients, and
	// guest-initiated connections to real listeners on UDS_<port>. Empty:
	// the host side stays inside the world (Lab().Host reaches it).
	UDS string
	// Device is the device profile (default "firecracker-1.14", as serve).
	Device string
	// CID is the guest's context ID, GET_CONFIG's guest_cid (default 3).
	CID uint64
	// BufAlloc is the device's buffer per connection, the buf_alloc it
	// advertises (0: the profile's, 64 KiB; emu.Config.DeviceBufAlloc).
	BufAlloc uint32
	// Pcap, if set, receives a LINKTYPE_VSOCK capture of every packet.
	Pcap io.Writer
	// Log, if set, sees every event log record of the kinds in LogKinds
	// (0: world and fault records), as it happens.
	Log      func(engine.Record)
	LogKinds engine.Kind
}

// Backend is a vhost-user vsock back-end: the front-end's rings in front,
// the unchanged device model and its host side behind.
type Backend struct {
	cfg  Config
	w    *emu.World
	lab  *lab.Lab
	ln   *net.UnixListener // vhost-user socket
	host net.Listener      // real hybrid vsock socket
	sig  *signals
	// up is down while the guest's rings are stopped: host clients wait
	// for the device then (lab.DeviceGate).
	up       *lab.DeviceGate
	hostStop context.CancelFunc
	ram      guestRAM // owned by the world's goroutine

	badTXStopped uint64 // bad TX chains of devices stopped so far; the world's goroutine

	pcapMu  sync.Mutex
	pcap    *replay.PcapWriter
	pcapErr error

	mu      sync.Mutex
	serving bool
	closed  bool
}

// Listen builds the world (device and host side, no guest model), binds
// the vhost-user socket and the hybrid vsock socket, and starts the
// world's real-time driver. When it returns, QEMU may connect.
func Listen(cfg Config) (*Backend, error) {
	if cfg.Device == "" {
		cfg.Device = "firecracker-1.14"
	}
	if cfg.CID == 0 {
		cfg.CID = 3
	}
	if cfg.CID <= virtio.CIDHost || cfg.CID > 0xffffffff-1 {
		return nil, fmt.Errorf("vhost-user: guest CID %d: must be above 2 and below 2^32-1", cfg.CID)
	}
	if cfg.LogKinds == 0 {
		cfg.LogKinds = engine.KindWorld | engine.KindFault
	}
	udsPath := cfg.UDS
	if udsPath == "" {
		udsPath = emu.DefaultUDSPath
	}
	w, err := emu.NewExternal(emu.Config{Device: cfg.Device, GuestCID: cfg.CID, UDSPath: udsPath, DeviceBufAlloc: cfg.BufAlloc})
	if err != nil {
		return nil, fmt.Errorf("vhost-user: %w", err)
	}
	b := &Backend{cfg: cfg, w: w, sig: newSignals(), up: lab.NewDeviceGate(), hostStop: func() {}}
	// A back-end runs for as long as the VM: the log streams to the sink,
	// and the real-time driver stores only its last lab.LiveLogLimit
	// records.
	w.Eng.Log.Keep(cfg.LogKinds)
	if cfg.Log != nil {
		w.Eng.Log.OnRecord(cfg.Log)
	}
	if cfg.Pcap != nil {
		if b.pcap, err = replay.NewPcapWriter(cfg.Pcap); err != nil {
			return nil, fmt.Errorf("vhost-user: pcap: %w", err)
		}
		w.AddTap(b.capture)
	}
	if cfg.Socket != "" {
		_ = os.Remove(cfg.Socket)
		if b.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"}); err != nil {
			return nil, fmt.Errorf("vhost-user: %w", err)
		}
	}
	if cfg.UDS != "" {
		_ = os.Remove(cfg.UDS)
		if b.host, err = net.Listen("unix", cfg.UDS); err != nil {
			if b.ln != nil {
				b.ln.Close()
			}
			return nil, fmt.Errorf("vhost-user: %w", err)
		}
	}
	b.lab = lab.StartWorld(w)
	if cfg.UDS != "" {
		b.lab.Host.ReachRealSockets()
		// The same host side as serve's: line timeout, pending bound,
		// accept backoff; clients wait while the rings are stopped.
		srv := &lab.HybridServer{Host: b.lab.Host, WaitDevice: b.up.Wait, Logf: b.logf}
		var ctx context.Context
		ctx, b.hostStop = context.WithCancel(context.Background())
		go srv.Serve(ctx, b.host)
	}
	b.logf("back-end for device %s, guest cid %d, host side on %s", cfg.Device, cfg.CID, udsPath)
	return b, nil
}

// Lab is the world's runtime adapter: its Host reaches the device's host
// side in the world, and Do runs a function on the world.
func (b *Backend) Lab() *lab.Lab { return b.lab }

func (b *Backend) capture(at time.Duration, dir device.Dir, h *virtio.Header, payload []byte) {
	b.pcapMu.Lock()
	defer b.pcapMu.Unlock()
	if b.pcapErr == nil {
		b.pcapErr = b.pcap.Write(replay.Packet{At: at, Dir: dir, Hdr: *h, Payload: payload})
	}
}

// logf adds a back-end line to the event log.
func (b *Backend) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	_ = b.lab.Do(func(w *emu.World) error {
		w.Eng.Log.Add(w.Eng.Now(), engine.KindWorld, "vhost", msg)
		return nil
	})
}

// Serve accepts one front-end on the vhost-user socket and serves it until
// it disconnects or ctx is done (nil), or until it sends a message the
// back-end refuses (a *ProtocolError; the connection is closed).
func (b *Backend) Serve(ctx context.Context) error {
	if b.ln == nil {
		return errors.New("vhost-user: no socket to serve (Config.Socket is empty)")
	}
	stop := context.AfterFunc(ctx, func() { b.ln.Close() })
	defer stop()
	c, err := b.ln.AcceptUnix()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("vhost-user: accept: %w", err)
	}
	return b.ServeConn(ctx, c)
}

// ServeConn serves one front-end connection, as Serve does, and closes it.
// Only one connection is served at a time.
func (b *Backend) ServeConn(ctx context.Context, c *net.UnixConn) error {
	b.mu.Lock()
	if b.serving || b.closed {
		b.mu.Unlock()
		c.Close()
		return errors.New("vhost-user: the back-end is already serving a front-end, or closed")
	}
	b.serving = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.serving = false
		b.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	s := newSession(b, c)
	err := s.run()
	s.teardown()
	c.Close()
	if err == errDisconnected || ctx.Err() != nil {
		return nil
	}
	if err != nil {
		b.logf("closing the front-end connection: %v", err)
	}
	return err
}

// Summary is what a back-end did.
type Summary struct {
	FromGuest, ToGuest           uint64 // packets
	BytesFromGuest, BytesToGuest uint64 // RW payload bytes
	BadTXChains                  uint64 // TX chains the device dropped, over every ring restart
	RingRestarts                 int
	PcapErr                      error
}

func (s Summary) String() string {
	line := fmt.Sprintf("%d packets from the guest (%d data bytes), %d to the guest (%d data bytes), %d bad TX chains, rings restarted %d times",
		s.FromGuest, s.BytesFromGuest, s.ToGuest, s.BytesToGuest, s.BadTXChains, s.RingRestarts)
	if s.PcapErr != nil {
		line += "; pcap: " + s.PcapErr.Error()
	}
	return line
}

// Close stops the world, unbinds both sockets and returns the summary.
func (b *Backend) Close() Summary {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		_ = os.Remove(b.cfg.Socket)
	}
	b.up.Close()
	b.hostStop()
	if b.host != nil {
		b.host.Close()
		_ = os.Remove(b.cfg.UDS)
	}
	var sum Summary
	_ = b.lab.Do(func(w *emu.World) error {
		c := w.Counters()
		for op := range c.Packets[device.GuestToHost] {
			sum.FromGuest += c.Packets[device.GuestToHost][op]
			sum.ToGuest += c.Packets[device.HostToGuest][op]
		}
		sum.BytesFromGuest, sum.BytesToGuest = c.RWBytes[device.GuestToHost], c.RWBytes[device.HostToGuest]
		sum.BadTXChains = b.badTXStopped
		if w.RingsRunning() {
			sum.BadTXChains += w.Dev.Stats().BadTXChains
		}
		sum.RingRestarts = w.Cycles()
		return nil
	})
	b.lab.Stop()
	b.pcapMu.Lock()
	sum.PcapErr = b.pcapErr
	b.pcapMu.Unlock()
	return sum
}
