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

	"github.com/vsocklab/vsocklab/emu/lab"
)

// A scenario is a function of the lab: here a guest echo server and a host
// client that reaches it with Firecracker's CONNECT/OK handshake. In a
// test, the same code goes into lab.Test, which gives it the bubble's
// *testing.T, virtual time and a deterministic event log:
//
//	func TestEcho(t *testing.T) {
//		lab.Test(t, lab.Config{}, func(t *testing.T, l *lab.Lab) {
//			echo(l) // with require.NoError(t, err) for the errors
//		})
//	}
//
// Outside a test (as here, where an example has no *testing.T), lab.Start
// runs it on the wall clock.
func Example_scenario() {
	echo := func(l *lab.Lab) {
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
		c, err := l.Host.DialVsock(context.Background(), 10000)
		if err != nil {
			panic(err)
		}
		fmt.Println("host", c.LocalAddr(), "-> guest", c.RemoteAddr())
		fmt.Fprintln(c, "hello over vsock")
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		c.Close()
	}

	l, err := lab.Start(lab.Config{}) // the traces' default world, seed 1
	if err != nil {
		panic(err)
	}
	echo(l)
	res := l.Stop()
	fmt.Println("operations still blocked:", len(res.Blocked))
	// Output:
	// host host(2):1073741824 -> guest vm(3):10000
	// hello over vsock
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
