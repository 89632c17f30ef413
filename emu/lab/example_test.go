package lab_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/lab"
)

// A guest program listens on vsock port 10000; a host program reaches it
// through the device's Unix socket with Firecracker's hybrid vsock
// protocol. Start runs on the wall clock; inside a test, lab.Run gives the
// same programs virtual time and a deterministic event log.
func ExampleStart() {
	l, err := lab.Start(lab.Config{Config: emu.Config{Device: "firecracker-1.14", Kernel: "linux-6.12.68"}})
	if err != nil {
		panic(err)
	}
	defer l.Stop()

	ln, err := l.Guest.Listen(10000)
	if err != nil {
		panic(err)
	}
	go func() { // the guest's echo server
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()

	c, err := l.Host.Dial(l.Host.UDSPath())
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(c, "CONNECT 10000\n")
	r := bufio.NewReader(c)
	ok, _ := r.ReadString('\n')
	fmt.Print(ok)
	fmt.Fprintf(c, "hello over vsock\n")
	echo, _ := r.ReadString('\n')
	fmt.Print(echo)
	c.Close()
	// Output:
	// OK 1073741824
	// hello over vsock
}

// A scenario is a function of the lab: here a host service listening for
// the guest on vsock port 9000 (Firecracker's UDSPath_9000) and a guest
// program that connects to it from a port of its choosing. In a test, the
// same code goes into lab.Test, which gives it the bubble's *testing.T,
// virtual time and a deterministic event log:
//
//	func TestReport(t *testing.T) {
//		lab.Test(t, lab.Config{}, func(t *testing.T, l *lab.Lab) {
//			report(l) // with require.NoError(t, err) for the errors
//		})
//	}
//
// Outside a test (as here, where an example has no *testing.T), lab.Start
// runs it on the wall clock.
func Example_scenario() {
	report := func(l *lab.Lab) {
		ln, err := l.Host.Vsock().Listen(9000, nil)
		if err != nil {
			panic(err)
		}
		s, err := l.Guest.Bind(4000) // socket(2), bind(2)
		if err != nil {
			panic(err)
		}
		c, err := s.Dial(context.Background(), 2, 9000) // connect(2) from port 4000
		if err != nil {
			panic(err)
		}
		fmt.Fprintln(c, "up")

		hc, err := ln.Accept()
		if err != nil {
			panic(err)
		}
		line, _ := bufio.NewReader(hc).ReadString('\n')
		fmt.Printf("%s -> %s: %s", c.LocalAddr(), hc.LocalAddr(), line)
		c.Close()
		hc.Close()
	}

	l, err := lab.Start(lab.Config{}) // the traces' default world, seed 1
	if err != nil {
		panic(err)
	}
	report(l)
	res := l.Stop()
	fmt.Println("operations still blocked:", len(res.Blocked))
	// Output:
	// vm(3):4000 -> host(2):9000: up
	// operations still blocked: 0
}

// HTTP over vsock: a net/http server on a guest listener, a client on the
// host whose transport dials through the device.
func ExampleHost_DialVsock() {
	l, err := lab.Start(lab.Config{})
	if err != nil {
		panic(err)
	}
	defer l.Stop()

	ln, err := l.Guest.Listen(8080)
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "guest says hi to %s on %s\n", r.RemoteAddr, r.URL.Path)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return l.Host.DialVsock(ctx, 8080)
		},
	}}
	resp, err := client.Get("http://guest/status")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.Status, ": ", string(body))
	client.CloseIdleConnections()
	// Output:
	// 200 OK: guest says hi to host(2):1073741824 on /status
}

// Suspend snapshots the VM as Firecracker does: the device drops its host
// connections and posts a transport reset, which the guest handles when it
// resumes; its connections are reset, its listeners stay. (In a test,
// lab.Test runs the same steps on virtual time.)
func ExampleLab_Suspend() {
	l, err := lab.Start(lab.Config{})
	if err != nil {
		panic(err)
	}
	defer l.Stop()

	ln, err := l.Guest.Listen(10000)
	if err != nil {
		panic(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	host, err := l.Host.DialVsock(context.Background(), 10000)
	if err != nil {
		panic(err)
	}
	guest := <-accepted

	if err := l.Suspend(); err != nil {
		panic(err)
	}
	_, err = host.Read(make([]byte, 1))
	fmt.Println("host side after suspend: EOF", errors.Is(err, io.EOF))

	if err := l.Resume(); err != nil {
		panic(err)
	}
	_, err = guest.Read(make([]byte, 1))
	// Linux's vsock_connectible_recvmsg: a reset socket is no longer
	// established, so a read is ENOTCONN.
	fmt.Println("guest side after resume: not connected", errors.Is(err, syscall.ENOTCONN))
	// A reset socket stays in the guest's connected table until its owner
	// closes it; Firecracker before 1.15 restarts its host ports after a
	// restore, so the next connection would get the same host port and
	// collide with it (the slow-resume incident of testdata/incidents).
	guest.Close()

	again, err := l.Host.DialVsock(context.Background(), 10000)
	if err != nil {
		panic(err)
	}
	fmt.Println("new connection:", again.RemoteAddr())
	// Output:
	// host side after suspend: EOF true
	// guest side after resume: not connected true
	// new connection: vm(3):10000
}
