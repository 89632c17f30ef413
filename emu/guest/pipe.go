package guest

import "syscall"

// PipeCapacity is Linux's default pipe size: 16 pages of 4 KiB.
const PipeCapacity = 65536

// Pipe is an anonymous pipe in the guest, like the one between a workload's
// stdout and init. Operations never block: a full pipe returns EAGAIN to
// the writer and an empty one to the reader; the adapter parks callers and
// the kernel's Wake hook tells it when to retry.
type Pipe struct {
	k        *Kernel
	ID       int
	buf      []byte
	off      int
	rdClosed bool
	wrClosed bool
	written  uint64
}

// NewPipe creates a pipe of PipeCapacity bytes.
func (k *Kernel) NewPipe() *Pipe {
	k.nextPipe++
	return &Pipe{k: k, ID: k.nextPipe}
}

// Buffered returns the bytes waiting in the pipe.
func (p *Pipe) Buffered() int { return len(p.buf) - p.off }

// Written returns the bytes that went in so far.
func (p *Pipe) Written() uint64 { return p.written }

// Write copies as much of b as fits. It fails with EPIPE when the read end
// is closed and EAGAIN when the pipe is full.
func (p *Pipe) Write(b []byte) (int, error) {
	if p.wrClosed {
		return 0, syscall.EBADF
	}
	if p.rdClosed {
		return 0, syscall.EPIPE
	}
	if len(b) == 0 {
		return 0, nil
	}
	n := min(len(b), PipeCapacity-p.Buffered())
	if n == 0 {
		return 0, syscall.EAGAIN
	}
	if p.off > 0 && len(p.buf)+n > cap(p.buf) {
		m := copy(p.buf, p.buf[p.off:])
		p.buf = p.buf[:m]
		p.off = 0
	}
	p.buf = append(p.buf, b[:n]...)
	p.written += uint64(n)
	p.k.wake(p)
	return n, nil
}

// Read copies buffered bytes into b: 0, nil at end of file (the write end
// closed and nothing left), EAGAIN when empty.
func (p *Pipe) Read(b []byte) (int, error) {
	if p.rdClosed {
		return 0, syscall.EBADF
	}
	if p.Buffered() == 0 {
		if p.wrClosed {
			return 0, nil
		}
		if len(b) == 0 {
			return 0, nil
		}
		return 0, syscall.EAGAIN
	}
	n := copy(b, p.buf[p.off:])
	p.off += n
	if p.off == len(p.buf) {
		p.buf, p.off = p.buf[:0], 0
	}
	p.k.wake(p)
	return n, nil
}

// CloseWrite closes the write end: the reader drains, then sees EOF.
func (p *Pipe) CloseWrite() {
	if !p.wrClosed {
		p.wrClosed = true
		p.k.wake(p)
	}
}

// CloseRead closes the read end: writers get EPIPE.
func (p *Pipe) CloseRead() {
	if !p.rdClosed {
		p.rdClosed = true
		p.buf, p.off = nil, 0
		p.k.wake(p)
	}
}

// Readable reports whether a blocked reader would wake.
func (p *Pipe) Readable() bool { return p.Buffered() > 0 || p.wrClosed || p.rdClosed }

// Writable reports whether a blocked writer would wake.
func (p *Pipe) Writable() bool { return p.Buffered() < PipeCapacity || p.rdClosed || p.wrClosed }

// ReadEnds reports whether Read would return at once with end of file or an
// error, touching nothing.
func (p *Pipe) ReadEnds() bool { return p.rdClosed || p.Buffered() == 0 && p.wrClosed }

// WriteFails reports whether Write would fail at once, touching nothing.
func (p *Pipe) WriteFails() bool { return p.wrClosed || p.rdClosed }
