package programs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/virtio"
)

// StreamSpec is one paced byte stream across the device, between a writer
// on one side and a reader on the other: the writer sends Size bytes every
// Every until Total; the reader reads at most ReadSize bytes every
// ReadEvery (0: as fast as the data comes). The bytes follow the
// position-dependent test pattern (internal/pattern), so the reader can tell a lost, duplicated or
// reordered byte from the right one.
type StreamSpec struct {
	FromHost  bool // the host writes to a guest listener; else the guest writes to a host listener
	Port      uint32
	Total     int64
	Size      int
	Every     time.Duration
	ReadSize  int
	ReadEvery time.Duration
	// Rcvlowat, when set, is SO_RCVLOWAT on the guest reader's socket
	// (FromHost only).
	Rcvlowat int
	// Unread: the reader accepts the connection and never reads it, as a
	// program that stopped reading does; the writer meets flow control.
	Unread bool
}

// StreamStats is what a stream did so far.
type StreamStats struct {
	Connected    bool
	ConnectErr   string // why the writer never connected
	Written      int64  // accepted by the writer's socket
	Delivered    int64  // read by the reader
	OutOfOrderAt int64  // first delivered byte that differs from the pattern, -1 if none
	ReaderErr    string
	WriterErr    string

	Blocked      bool          // a write is waiting now
	BlockedSince time.Duration // since when, when Blocked
	LongestBlock time.Duration // counting a write still waiting

	// Ended: the reader read the end of the stream.
	Ended bool
	// ReaderWait is how long the reader has been waiting in a read that
	// has returned nothing yet (0 when it is not in a read): a reader that
	// waits while bytes it was sent do not come is a stalled stream.
	ReaderWait time.Duration
}

// Stream is a running stream.
type Stream struct {
	l    *lab.Lab
	spec StreamSpec

	mu        sync.Mutex
	st        StreamStats
	since     time.Duration // when the current write began
	reading   bool          // the reader is in a read
	readSince time.Duration // when that read began
}

// StartStream sets the reader up (its listener is bound before this
// returns, so the writer cannot race it) and starts both sides.
func StartStream(l *lab.Lab, spec StreamSpec) (*Stream, error) {
	s := &Stream{l: l, spec: spec, st: StreamStats{OutOfOrderAt: -1}}
	var ln net.Listener
	var err error
	if spec.FromHost {
		ln, err = l.Guest.Listen(spec.Port)
	} else {
		ln, err = l.Host.Listen(l.Host.UDSPath() + "_" + strconv.FormatUint(uint64(spec.Port), 10))
	}
	if err != nil {
		return nil, fmt.Errorf("stream: listen on port %d: %w", spec.Port, err)
	}
	l.Go(func(ctx context.Context) { s.read(ln) })
	l.Go(s.write)
	return s, nil
}

func (s *Stream) read(ln net.Listener) {
	c, err := ln.Accept()
	ln.Close()
	if err != nil {
		s.setErr(&s.st.ReaderErr, err)
		return
	}
	defer c.Close()
	if s.spec.Unread {
		<-s.l.Context().Done() // hold the connection open, unread, to the end
		return
	}
	if s.spec.Rcvlowat > 0 {
		if gc, ok := c.(*lab.Conn); ok {
			if err := gc.SetRcvlowat(s.spec.Rcvlowat); err != nil {
				s.setErr(&s.st.ReaderErr, err)
				return
			}
		}
	}
	buf := make([]byte, max(s.spec.ReadSize, 1))
	if s.spec.ReadSize == 0 {
		buf = make([]byte, virtio.MaxPktBufSize)
	}
	for {
		if s.spec.ReadEvery > 0 {
			time.Sleep(s.spec.ReadEvery)
		}
		s.mu.Lock()
		s.reading, s.readSince = true, s.l.Now()
		s.mu.Unlock()
		n, err := c.Read(buf)
		s.mu.Lock()
		s.reading = false
		if s.st.OutOfOrderAt < 0 {
			if i := pattern.Mismatch(buf[:n], uint64(s.st.Delivered)); i >= 0 {
				s.st.OutOfOrderAt = s.st.Delivered + i
			}
		}
		s.st.Delivered += int64(n)
		s.mu.Unlock()
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.mu.Lock()
				s.st.Ended = true
				s.mu.Unlock()
			} else if !errors.Is(err, net.ErrClosed) {
				s.setErr(&s.st.ReaderErr, err)
			}
			return
		}
	}
}

func (s *Stream) write(ctx context.Context) {
	var c net.Conn
	var err error
	if s.spec.FromHost {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var hc *hostd.HybridConn
		hc, err = hostd.Connect(dctx, func(context.Context) (net.Conn, error) { return s.l.Host.Dial(s.l.Host.UDSPath()) }, s.spec.Port)
		cancel()
		if hc != nil {
			c = hc
		}
	} else {
		c, err = s.l.Guest.Dial(virtio.CIDHost, s.spec.Port)
	}
	if err != nil {
		s.setErr(&s.st.ConnectErr, err)
		return
	}
	defer c.Close()
	s.mu.Lock()
	s.st.Connected = true
	s.mu.Unlock()
	chunk := make([]byte, max(s.spec.Size, 1))
	for off := int64(0); off < s.spec.Total; {
		n := min(int64(len(chunk)), s.spec.Total-off)
		pattern.Fill(chunk[:n], uint64(off))
		s.mu.Lock()
		s.st.Blocked, s.since = true, s.l.Now()
		s.mu.Unlock()
		m, err := c.Write(chunk[:n])
		s.mu.Lock()
		s.st.Blocked = false
		s.st.LongestBlock = max(s.st.LongestBlock, s.l.Now()-s.since)
		s.st.Written += int64(m)
		s.mu.Unlock()
		if err != nil {
			s.setErr(&s.st.WriterErr, err)
			return
		}
		off += n
		if s.spec.Every > 0 {
			time.Sleep(s.spec.Every)
		}
	}
	// Everything written: close, so that a reader waiting for more than the
	// rest (SO_RCVLOWAT) still gets it, then end of stream.
}

func (s *Stream) setErr(dst *string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *dst == "" {
		*dst = err.Error()
	}
}

// Stats returns what the stream did so far, at the lab's current time.
func (s *Stream) Stats() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st.Blocked {
		st.BlockedSince = s.since
		st.LongestBlock = max(st.LongestBlock, s.l.Now()-s.since)
	}
	if s.reading {
		st.ReaderWait = s.l.Now() - s.readSince
	}
	return st
}

// Spec returns what the stream was started with.
func (s *Stream) Spec() StreamSpec { return s.spec }
