// Command kinit is PID 1 of the real-kernel harness's initramfs (package
// realkernel). As PID 1 it mounts /proc, /sys and /dev, loads the kernel
// modules listed in /kinit.json in order with finit_module, starts the
// program under test, reads commands from the serial console, and powers
// the machine off when the program exits or the harness says so. Every
// line it prints starts with "kinit: " so that the harness can tell its
// markers from the kernel's and the program's output.
//
// The same static binary carries the small guest programs the harness
// runs (any PID but 1):
//
//	kinit write --total N --size N [--progress PATH]   the workload: N bytes to stdout in writes of size
//	kinit stream --port N --total N --size N           a probe: connect to the host (CID 2) and send N bytes
//	kinit probe --port N --sizes N,N,... --read N --read-size N
//	                                                   a conformance probe: one write per size, then reads
//	kinit cases --base N --cases w1,h4096,n,...       conformance cases (package internal/conform), case i on port base+i
//	kinit idle                                         a workload that runs and writes nothing
//
// Console commands, one a line:
//
//	reset      unbind and bind the virtio device of the vsock driver in
//	           sysfs: the driver's remove path resets every connected
//	           socket and stops the rings, its probe starts them again
//	poweroff   power off now
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/internal/conform"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/realkernel"
)

func main() {
	if os.Getpid() != 1 && len(os.Args) > 1 {
		os.Exit(subcommand(os.Args[1], os.Args[2:]))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kinit: not PID 1; subcommands: write, stream")
		os.Exit(2)
	}
	pid1()
}

var boot = time.Now()

func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "kinit: "+format+"\n", args...)
}

// uptime reads the kernel's clock since boot, so markers can be compared
// with the host's wall clock of the boot.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func pid1() {
	defer powerOff()
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			say("error: mkdir %s: %v", m.dst, err)
			return
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID, ""); err != nil && err != unix.EBUSY {
			say("error: mount %s on %s: %v", m.fstype, m.dst, err)
			return
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	say("pid1 up at %s s, kernel %s", uptime(), unix.ByteSliceToString(uts.Release[:]))

	b, err := os.ReadFile("/kinit.json")
	if err != nil {
		say("error: %v", err)
		return
	}
	var cfg realkernel.KinitConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		say("error: /kinit.json: %v", err)
		return
	}
	for _, m := range cfg.Modules {
		if err := loadModule(m); err != nil {
			say("error: load module %s: %v", m, err)
			return
		}
	}
	say("modules loaded (%d) at %s s", len(cfg.Modules), uptime())

	exited := make(chan struct{})
	if len(cfg.Run) > 0 {
		cmd := exec.Command(cfg.Run[0], cfg.Run[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		cmd.Env = []string{"PATH=/bin"}
		if err := cmd.Start(); err != nil {
			say("error: start %s: %v", cfg.Run[0], err)
			return
		}
		say("started %s (pid %d)", strings.Join(cfg.Run, " "), cmd.Process.Pid)
		go func() {
			err := cmd.Wait()
			say("program exited: %v", errString(err))
			close(exited)
		}()
	}
	say("ready")
	if len(cfg.Run) == 0 && !cfg.StayUp {
		return
	}
	cmds := make(chan string)
	go readConsole(cmds)
	for {
		select {
		case <-exited:
			if !cfg.StayUp {
				return
			}
			exited = nil
		case line, ok := <-cmds:
			if !ok {
				return
			}
			switch line {
			case "reset":
				if err := resetVsockDevice(); err != nil {
					say("error: reset: %v", err)
				}
			case "poweroff":
				say("poweroff requested")
				return
			case "":
			default:
				say("unknown command %q", line)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// readConsole reads command lines from the serial console (PID 1's
// standard input, /dev/console).
func readConsole(out chan<- string) {
	defer close(out)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		out <- strings.TrimSpace(sc.Text())
	}
}

// loadModule loads one module with finit_module. Compressed modules
// (.ko.xz, as Debian's 6.12 kernels ship them with
// CONFIG_MODULE_DECOMPRESS=y) are handed to the kernel as they are, with
// MODULE_INIT_COMPRESSED_FILE (Linux kernel/module/main.c,
// SYSCALL_DEFINE3(finit_module), v6.12).
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && err != unix.EEXIST {
		return err
	}
	return nil
}

// vsockDriver is the virtio driver of the vsock transport in sysfs.
const vsockDriver = "/sys/bus/virtio/drivers/vmw_vsock_virtio_transport"

// resetVsockDevice unbinds the vsock transport's virtio device from its
// driver and binds it again. Unbinding runs virtio_vsock_remove, whose
// virtio_vsock_vqs_del resets every connected socket with
// vsock_for_each_connected_socket(&virtio_transport.transport,
// virtio_vsock_reset_sock) — the very call virtio_vsock_event_handle makes
// for VIRTIO_VSOCK_EVENT_TRANSPORT_RESET — and then resets the device, so
// QEMU stops the vhost-user rings (GET_VRING_BASE); binding runs
// virtio_vsock_probe, which sets the rings up again (Linux
// net/vmw_vsock/virtio_transport.c, virtio_vsock_remove,
// virtio_vsock_vqs_del, virtio_vsock_event_handle, v6.1 and v6.12). The
// sockets stay in the connected table in TCP_CLOSE with sk_err
// ECONNRESET until their owner closes them.
func resetVsockDevice() error {
	devs, err := filepath.Glob(vsockDriver + "/virtio*")
	if err != nil || len(devs) == 0 {
		return fmt.Errorf("no virtio device bound to %s", vsockDriver)
	}
	dev := filepath.Base(devs[0])
	say("reset: unbinding %s at %s s", dev, uptime())
	if err := os.WriteFile(vsockDriver+"/unbind", []byte(dev), 0); err != nil {
		return fmt.Errorf("unbind %s: %w", dev, err)
	}
	if err := os.WriteFile(vsockDriver+"/bind", []byte(dev), 0); err != nil {
		return fmt.Errorf("bind %s: %w", dev, err)
	}
	say("reset done: %s bound again at %s s", dev, uptime())
	return nil
}

func powerOff() {
	say("powering off at %s s", uptime())
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Reboot returns only on failure; PID 1 must not exit (the kernel
	// would panic), so wait for the harness's timeout.
	select {}
}

func subcommand(name string, args []string) int {
	switch name {
	case "write":
		return writeCmd(args)
	case "stream":
		return streamCmd(args)
	case "probe":
		return probeCmd(args)
	case "cases":
		return casesCmd(args)
	case "idle":
		// A workload that runs until it is killed and writes nothing:
		// init's status check sees it "running". (An empty select would
		// be the runtime's "all goroutines are asleep" fatal error.)
		for {
			time.Sleep(time.Hour)
		}
	}
	fmt.Fprintf(os.Stderr, "kinit: unknown subcommand %q (write, stream, probe, idle)\n", name)
	return 2
}

// fill writes the test stream every oracle of this repository checks
// (package internal/pattern) at offset off.
func fill(b []byte, off uint64) { pattern.Fill(b, off) }

// writeCmd is the workload of seed 000: total bytes to stdout in writes of
// size. After every write it reports its progress on the console (a path
// init does not pump, so progress is visible while the stdout pipe is
// blocked).
func writeCmd(args []string) int {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	total := fs.Uint64("total", 1<<20, "bytes to write")
	size := fs.Int("size", 64<<10, "bytes per write")
	progress := fs.String("progress", "/dev/console", "where to report progress")
	if err := fs.Parse(args); err != nil || *size <= 0 {
		return 2
	}
	con, err := os.OpenFile(*progress, os.O_WRONLY, 0)
	if err != nil {
		con = os.Stderr
	}
	buf := make([]byte, *size)
	start := time.Now()
	var off uint64
	for off < *total {
		n := min(uint64(*size), *total-off)
		fill(buf[:n], off)
		w, err := os.Stdout.Write(buf[:n])
		off += uint64(w)
		if err != nil {
			fmt.Fprintf(con, "kinit: write: error after %d bytes: %v\n", off, err)
			return 1
		}
		fmt.Fprintf(con, "kinit: write: %d of %d bytes written at %.3f s\n", off, *total, time.Since(start).Seconds())
	}
	fmt.Fprintf(con, "kinit: write: done, %d bytes in %.3f s\n", off, time.Since(start).Seconds())
	return 0
}

// streamCmd connects to the host and sends total bytes in writes of size,
// then reports the rate it saw.
func streamCmd(args []string) int {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	port := fs.Uint("port", 5000, "host vsock port")
	total := fs.Uint64("total", 64<<20, "bytes to send")
	size := fs.Int("size", 64<<10, "bytes per write")
	if err := fs.Parse(args); err != nil || *size <= 0 || *port > 0xffffffff {
		return 2
	}
	f, err := dialHost(uint32(*port))
	if err != nil {
		fmt.Printf("kinit: stream: %v\n", err)
		return 1
	}
	defer f.Close()
	buf := make([]byte, *size)
	start := time.Now()
	var off uint64
	for off < *total {
		n := min(uint64(*size), *total-off)
		fill(buf[:n], off)
		w, err := f.Write(buf[:n])
		off += uint64(w)
		if err != nil {
			fmt.Printf("kinit: stream: error after %d bytes: %v\n", off, err)
			return 1
		}
	}
	el := time.Since(start)
	fmt.Printf("kinit: stream: done, %d bytes in %.3f s, %.1f MB/s\n", off, el.Seconds(), float64(off)/el.Seconds()/1e6)
	_ = f.CloseWrite()
	// Wait for the host to close, so the last bytes are not cut off by
	// the power-off.
	_, _ = io.Copy(io.Discard, f)
	return 0
}

// probeCmd connects to the host and makes one write of each size, pausing
// between them so that each becomes its own packets, then reads --read
// bytes in reads of --read-size (pausing too, so that the credit updates
// the reads cause are visible one by one), and closes. The host side of
// the conformance test knows the same sequence.
func probeCmd(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	port := fs.Uint("port", 5001, "host vsock port")
	sizes := fs.String("sizes", "1,4096,65536", "comma-separated write sizes")
	read := fs.Int("read", 0, "bytes to read back from the host")
	readSize := fs.Int("read-size", 4096, "bytes per read")
	pause := fs.Duration("pause", 300*time.Millisecond, "pause after each write and read")
	readDelay := fs.Duration("read-delay", 0, "wait this long before the first read, so that the host's bytes have all arrived")
	if err := fs.Parse(args); err != nil || *port > 0xffffffff || *readSize <= 0 {
		return 2
	}
	var ws []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Printf("kinit: probe: bad size %q\n", f)
			return 2
		}
		ws = append(ws, n)
	}
	f, err := dialHost(uint32(*port))
	if err != nil {
		fmt.Printf("kinit: probe: %v\n", err)
		return 1
	}
	defer f.Close()
	var off uint64
	for _, n := range ws {
		buf := make([]byte, n)
		fill(buf, off)
		if _, err := f.Write(buf); err != nil {
			fmt.Printf("kinit: probe: write %d: %v\n", n, err)
			return 1
		}
		off += uint64(n)
		fmt.Printf("kinit: probe: wrote %d\n", n)
		time.Sleep(*pause)
	}
	time.Sleep(*readDelay)
	buf := make([]byte, *readSize)
	got := 0
	for got < *read {
		n, err := f.Read(buf[:min(len(buf), *read-got)])
		got += n
		if err != nil {
			fmt.Printf("kinit: probe: read after %d bytes: %v\n", got, err)
			return 1
		}
		time.Sleep(*pause / 10)
	}
	fmt.Printf("kinit: probe: read %d\n", got)
	if err := f.Close(); err != nil {
		fmt.Printf("kinit: probe: close: %v\n", err)
	}
	fmt.Printf("kinit: probe: done\n")
	return 0
}

// casesCmd runs conformance cases (package internal/conform) one after
// the other, case i on its own connection to host port base+i, and says
// how each ended.
func casesCmd(args []string) int {
	// A signal interrupts a blocking vsock connect with EINTR, and the
	// kernel abandons the connection (Linux net/vmw_vsock/af_vsock.c,
	// vsock_connect: sock_intr_errno, vsock_transport_cancel_pkt): Go's
	// asynchronous preemption (SIGURG) did so to one case in a few
	// hundred. Run without it.
	if !strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		env := append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
		if err := unix.Exec("/proc/self/exe", append([]string{os.Args[0], "cases"}, args...), env); err != nil {
			fmt.Printf("kinit: cases: re-exec without async preemption: %v\n", err)
			return 1
		}
	}
	fs := flag.NewFlagSet("cases", flag.ContinueOnError)
	base := fs.Uint("base", 6000, "host vsock port of case 0")
	list := fs.String("cases", "", "comma-separated cases")
	pause := fs.Duration("pause", 20*time.Millisecond, "pause after each case")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cs, err := conform.Parse(*list)
	if err != nil || uint64(*base)+uint64(len(cs)) > 0xffffffff {
		fmt.Printf("kinit: cases: %v\n", err)
		return 2
	}
	for i, c := range cs {
		err := conform.RunGuest(c, uint32(*base)+uint32(i), caseGuest{})
		fmt.Printf("kinit: case %d %s: %s\n", i, c, errString(err))
		time.Sleep(*pause)
	}
	fmt.Printf("kinit: cases: done\n")
	return 0
}

// vsockConn is a connected AF_VSOCK stream socket.
type vsockConn struct {
	*os.File
	fd int
}

func (c vsockConn) CloseWrite() error { return unix.Shutdown(c.fd, unix.SHUT_WR) }

func (c vsockConn) SetWriteTimeout(d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
}

func (c vsockConn) SetBufferSize(n uint64) error {
	return unix.SetsockoptUint64(c.fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_SIZE, n)
}

func (c vsockConn) SetLinger(sec int) error {
	return unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: int32(sec)})
}

// dialHost connects an AF_VSOCK stream socket to the host's port.
func dialHost(port uint32) (vsockConn, error) { return dialVsock(unix.VMADDR_CID_HOST, port, 0) }

// dialVsock connects an AF_VSOCK stream socket to (cid, port), with
// SO_VM_SOCKETS_BUFFER_SIZE set to bufSize first unless it is 0.
func dialVsock(cid, port uint32, bufSize uint64) (vsockConn, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return vsockConn{}, fmt.Errorf("socket: %w", err)
	}
	if bufSize != 0 {
		if err := unix.SetsockoptUint64(fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_SIZE, bufSize); err != nil {
			unix.Close(fd)
			return vsockConn{}, fmt.Errorf("SO_VM_SOCKETS_BUFFER_SIZE %d: %w", bufSize, err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
		unix.Close(fd)
		return vsockConn{}, fmt.Errorf("connect %d:%d: %w", cid, port, err)
	}
	return vsockConn{File: os.NewFile(uintptr(fd), "vsock"), fd: fd}, nil
}

// boundVsock is an AF_VSOCK stream socket bound to a port of any CID.
func boundVsock(port uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %d: %w", port, err)
	}
	return fd, nil
}

// caseGuest is the real guest as the conformance cases use it.
type caseGuest struct{}

func (caseGuest) Dial(cid, port uint32, bufSize uint64) (conform.Conn, error) {
	return dialVsock(cid, port, bufSize)
}

func (caseGuest) DialFrom(local, cid, port uint32) (conform.Conn, error) {
	fd, err := boundVsock(local)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %d:%d: %w", cid, port, err)
	}
	return vsockConn{File: os.NewFile(uintptr(fd), "vsock"), fd: fd}, nil
}

func (caseGuest) Bind(port uint32) (io.Closer, error) {
	fd, err := boundVsock(port)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "vsock"), nil
}

func (caseGuest) Listen(port uint32) (conform.Listener, error) {
	fd, err := boundVsock(port)
	if err != nil {
		return nil, err
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %d: %w", port, err)
	}
	return vsockListener{fd}, nil
}

func (caseGuest) ResetDevice() error { return resetVsockDevice() }

// vsockListener is a listening AF_VSOCK stream socket.
type vsockListener struct{ fd int }

func (l vsockListener) Accept() (conform.Conn, error) {
	nfd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	return vsockConn{File: os.NewFile(uintptr(nfd), "vsock"), fd: nfd}, nil
}

func (l vsockListener) Close() error { return unix.Close(l.fd) }
