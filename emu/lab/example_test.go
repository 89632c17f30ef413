package lab_test

import (
	"bufio"
	"fmt"
	"io"

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
