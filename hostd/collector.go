package hostd

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
)

// Collector receives the guest's log streams on <uds>_<LogPort>. Each
// connection starts with a line naming the stream ("stdout"); every byte
// after it belongs to that stream. Reconnections append to the same stream.
type Collector struct {
	// Sink, when set, receives every chunk as it arrives (real mode writes
	// it out); the collector also keeps what Keep allows.
	Sink func(stream string, p []byte)
	// Keep is how many bytes per stream to retain (0: none; -1: all).
	Keep int

	mu      sync.Mutex
	streams map[string]*Stream
	order   []string
}

// Stream is what arrived for one stream name.
type Stream struct {
	Name        string
	Bytes       uint64 // every byte received, kept or not
	Data        []byte // the first Keep bytes
	Connections int
}

// Serve accepts log connections until ctx is done or ln fails.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.receive(ctx, conn)
		}()
	}
}

func (c *Collector) receive(ctx context.Context, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64*1024)
	name, err := r.ReadString('\n')
	if err != nil || len(name) < 2 {
		return
	}
	name = name[:len(name)-1]
	s := c.stream(name)
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.record(s, buf[:n])
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (c *Collector) stream(name string) *Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams == nil {
		c.streams = map[string]*Stream{}
	}
	s, ok := c.streams[name]
	if !ok {
		s = &Stream{Name: name}
		c.streams[name] = s
		c.order = append(c.order, name)
	}
	s.Connections++
	return s
}

func (c *Collector) record(s *Stream, p []byte) {
	c.mu.Lock()
	s.Bytes += uint64(len(p))
	if c.Keep < 0 || len(s.Data) < c.Keep {
		room := len(p)
		if c.Keep >= 0 {
			room = min(room, c.Keep-len(s.Data))
		}
		if len(s.Data)+room > cap(s.Data) {
			// Double: append grows a large slice by a quarter, which for a
			// stream of megabytes copied it five times over.
			grown := make([]byte, len(s.Data), max(2*cap(s.Data), len(s.Data)+room, 4096))
			copy(grown, s.Data)
			s.Data = grown
		}
		s.Data = append(s.Data, p[:room]...)
	}
	sink := c.Sink
	c.mu.Unlock()
	if sink != nil {
		sink(s.Name, p)
	}
}

// Streams returns a copy of every stream, in order of first arrival.
func (c *Collector) Streams() []Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stream, 0, len(c.order))
	for _, n := range c.order {
		s := *c.streams[n]
		s.Data = append([]byte(nil), s.Data...)
		out = append(out, s)
	}
	return out
}

// Bytes returns how many bytes the stream name has received, without
// copying its data as Stream does: for callers that poll it.
func (c *Collector) Bytes(name string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.streams[name]; ok {
		return s.Bytes
	}
	return 0
}

// Stream returns one stream by name, a copy as Streams makes.
func (c *Collector) Stream(name string) (Stream, bool) {
	var out Stream
	ok := c.Inspect(name, func(s Stream) {
		out = s
		out.Data = append([]byte(nil), s.Data...)
	})
	return out, ok
}

// Inspect calls f with the stream name, without copying its data, and
// reports whether the stream exists. f runs with the collector locked and
// must neither keep nor change s.Data: for callers that check a stream of
// megabytes often (the lab's stdout oracle reads it at each report).
func (c *Collector) Inspect(name string, f func(s Stream)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.streams[name]
	if ok {
		f(*s)
	}
	return ok
}
