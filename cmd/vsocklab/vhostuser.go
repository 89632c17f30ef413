package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/vhostuser"
)

// vhostUserMain serves the device model to a real guest kernel: QEMU's
// vhost-user-vsock-pci connects to --socket and hands over the guest's
// rings; the device's host side is Firecracker's hybrid vsock on --uds, as
// with serve. It runs until QEMU disconnects or a signal arrives.
func vhostUserMain(args []string) int {
	fs := flag.NewFlagSet("vhost-user", flag.ContinueOnError)
	socket := fs.String("socket", "", "vhost-user Unix socket to listen on, for QEMU's -chardev socket,path=... (required)")
	udsPath := fs.String("uds", "", "real Unix socket to serve the hybrid vsock protocol on (required)")
	dev := fs.String("device", "firecracker-1.14", "device profile (vsocklab profiles lists them)")
	cid := fs.Uint64("cid", 3, "guest CID, reported in the device's config space")
	pcapPath := fs.String("pcap", "", "write a LINKTYPE_VSOCK capture of every packet to FILE")
	bufAlloc := fs.Uint("buf-alloc", 0, "the device's buffer per connection, the buf_alloc it advertises, in bytes (0: the profile's 65536; 4096 to 1073741824)")
	logKinds := fs.String("log", "", "print event log records of these kinds to standard error as they happen (packet,conn,credit,host,fault,world,... or all; world and fault are always printed)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *socket == "" || *udsPath == "" {
		fmt.Fprintln(os.Stderr, "vsocklab vhost-user: --socket and --uds are required")
		return 2
	}
	if *bufAlloc != 0 && (*bufAlloc < device.MinBufAlloc || *bufAlloc > device.MaxBufAlloc) {
		fmt.Fprintf(os.Stderr, "vsocklab vhost-user: --buf-alloc %d: must be 0 or %d to %d\n", *bufAlloc, device.MinBufAlloc, device.MaxBufAlloc)
		return 2
	}
	kinds := engine.KindWorld | engine.KindFault
	if *logKinds != "" {
		k, err := engine.ParseKinds(*logKinds)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vsocklab vhost-user: --log:", err)
			return 2
		}
		kinds |= k
	}
	cfg := vhostuser.Config{
		Socket: *socket, UDS: *udsPath, Device: *dev, CID: *cid, BufAlloc: uint32(*bufAlloc), LogKinds: kinds,
		Log: func(r engine.Record) { fmt.Fprintln(os.Stderr, r.String()) },
	}
	var pcapFile *os.File
	var pcapBuf *bufio.Writer
	if *pcapPath != "" {
		f, err := os.Create(*pcapPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vsocklab vhost-user:", err)
			return 1
		}
		pcapFile, pcapBuf = f, bufio.NewWriter(f)
		cfg.Pcap = pcapBuf
	}
	// Signals are handled before the readiness line: a harness may stop
	// the back-end as soon as it has seen it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := vhostuser.Listen(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "vhost-user: listening on %s\n", *socket)
	serveErr := b.Serve(ctx)
	sum := b.Close()
	code := 0
	if pcapFile != nil {
		if err := pcapBuf.Flush(); err != nil && sum.PcapErr == nil {
			sum.PcapErr = err
		}
		if err := pcapFile.Close(); err != nil && sum.PcapErr == nil {
			sum.PcapErr = err
		}
		if sum.PcapErr != nil {
			code = 1
		}
	}
	switch {
	case serveErr != nil:
		fmt.Fprintf(os.Stderr, "vsocklab vhost-user: %v\n", serveErr)
		fmt.Fprintf(os.Stderr, "vhost-user: failed: %s\n", sum)
		return 1
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "vhost-user: stopped by signal: %s\n", sum)
	default:
		fmt.Fprintf(os.Stderr, "vhost-user: front-end disconnected: %s\n", sum)
	}
	return code
}
