package guestinit

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// The init API, HTTP/1.1 on APIPort:
//
//	GET /v1/status   -> 200 {"workload":"running"}
//	GET /v1/session  with "Connection: Upgrade", "Upgrade: yamux"
//	                 -> 101, then a yamux session (init is the server). On
//	                    every stream the client opens, init writes one JSON
//	                    Sample line per MetricsInterval.
const (
	StatusPath  = "/v1/status"
	SessionPath = "/v1/session"
	UpgradeName = "yamux"
)

// Sample is one line on a metrics stream.
type Sample struct {
	Seq   uint64 `json:"seq"`
	Usage Usage  `json:"usage"`
}

func (in *Init) serveAPI(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(in.status())
	})
	var sessions sync.WaitGroup
	mux.HandleFunc("GET "+SessionPath, func(w http.ResponseWriter, r *http.Request) {
		in.handleSession(ctx, w, r, &sessions)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed && ctx.Err() == nil {
		in.env.Logf("init: API server: %v", err)
	}
	sessions.Wait()
}

func (in *Init) handleSession(ctx context.Context, w http.ResponseWriter, r *http.Request, sessions *sync.WaitGroup) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), UpgradeName) {
		http.Error(w, "this endpoint needs Upgrade: yamux", http.StatusUpgradeRequired)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, err = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeName + "\r\n\r\n")
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		conn.Close()
		return
	}
	sc := &sessionConn{Conn: conn, r: rw.Reader, in: in}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	// The host's client keeps the session alive and notices when it dies.
	// A keepalive from this side too would be a second writer on the
	// session whose 30 s ticks coincide with the sample ticks, and two
	// writers due at the same instant are ordered by the scheduler, which
	// the lab's deterministic replay cannot allow.
	cfg.EnableKeepAlive = false
	sess, err := yamux.Server(sc, cfg)
	if err != nil {
		conn.Close()
		return
	}
	in.mu.Lock()
	in.stats.Sessions++
	in.mu.Unlock()
	sessions.Add(1)
	go func() {
		defer sessions.Done()
		stop := context.AfterFunc(ctx, func() { sess.Close() })
		defer stop()
		var streams sync.WaitGroup
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				// AcceptStream fails only once the session is shutting
				// down, which yamux finishes on its own. Calling Close here
				// as well would queue this goroutine on yamux's shutdown
				// lock while the closer waits for the send loop.
				break
			}
			streams.Add(1)
			go func() {
				defer streams.Done()
				in.sendSamples(ctx, st)
			}()
		}
		<-sess.CloseChan()
		streams.Wait()
	}()
}

// sendSamples writes a sample per interval until the stream or ctx ends.
func (in *Init) sendSamples(ctx context.Context, st *yamux.Stream) {
	defer st.Close()
	enc := json.NewEncoder(st)
	tick := time.NewTicker(in.opts.MetricsInterval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		in.mu.Lock()
		proc := in.proc
		in.mu.Unlock()
		s := Sample{Seq: seq}
		if proc != nil {
			s.Usage = proc.Usage()
		}
		if err := enc.Encode(s); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// sessionConn is the socket under a session. It notices transport resets
// so that the historical KeepResetSessions behaviour can refuse to close
// it, which is how seed 003's leak came about.
type sessionConn struct {
	net.Conn
	r      *bufio.Reader
	in     *Init
	mu     sync.Mutex
	reset  bool
	closed bool
}

func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.note(err)
	return n, err
}

func (c *sessionConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.note(err)
	return n, err
}

func (c *sessionConn) note(err error) {
	if err != nil && isReset(err) {
		c.mu.Lock()
		c.reset = true
		c.mu.Unlock()
	}
}

func (c *sessionConn) Close() error {
	c.mu.Lock()
	keep := c.in.opts.KeepResetSessions && c.reset
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	if keep {
		c.in.mu.Lock()
		c.in.stats.SessionsLeaked++
		c.in.mu.Unlock()
		c.in.env.Logf("init: session socket %s kept open after a transport reset (KeepResetSessions)", c.Conn.LocalAddr())
		return nil
	}
	return c.Conn.Close()
}
