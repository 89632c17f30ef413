package realkernel

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// BackendConfig is one run of `vsocklab vhost-user`.
type BackendConfig struct {
	// Binary is the vsocklab binary.
	Binary string
	// Socket is the vhost-user socket the backend listens on (QEMU
	// connects to it).
	Socket string
	// UDS is the Firecracker hybrid vsock socket of the host side;
	// guest-initiated connections to port P go to UDS_P.
	UDS string
	// Device is the device profile (default: the backend's).
	Device string
	// CID is the guest's CID (0: the backend's default).
	CID uint32
	// Pcap, when set, records every packet there.
	Pcap string
	// BufAlloc is --buf-alloc, the device's buffer (0: the profile's).
	BufAlloc uint32
	// Log is the --log list of kinds (e.g. "packet,fault"; empty: the
	// backend's default).
	Log string
	// Echo receives every line the backend prints (nil: none).
	Echo io.Writer
}

// Backend is a running vhost-user backend.
type Backend struct {
	*child
	closeOnce sync.Once
}

// BackendArgs is the command line for cfg, without the binary.
func BackendArgs(cfg BackendConfig) []string {
	args := []string{"vhost-user", "--socket", cfg.Socket, "--uds", cfg.UDS}
	if cfg.Device != "" {
		args = append(args, "--device", cfg.Device)
	}
	if cfg.CID != 0 {
		args = append(args, "--cid", strconv.FormatUint(uint64(cfg.CID), 10))
	}
	if cfg.Pcap != "" {
		args = append(args, "--pcap", cfg.Pcap)
	}
	if cfg.BufAlloc != 0 {
		args = append(args, "--buf-alloc", strconv.FormatUint(uint64(cfg.BufAlloc), 10))
	}
	if cfg.Log != "" {
		args = append(args, "--log", cfg.Log)
	}
	return args
}

// StartBackend starts the backend and waits until it says it listens
// ("vhost-user: listening on PATH"), so that QEMU, which is the socket's
// client and exits at once when nobody listens, can be started next.
func StartBackend(ctx context.Context, cfg BackendConfig) (*Backend, error) {
	cmd := exec.Command(cfg.Binary, BackendArgs(cfg)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	c, err := startChild(cmd, out, "backend ", cfg.Echo)
	if err != nil {
		return nil, fmt.Errorf("start backend: %w", err)
	}
	b := &Backend{child: c}
	c.stopOn(ctx, func() { b.Close() })
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.Expect(wctx, "vhost-user: listening on "+cfg.Socket); err != nil {
		b.Close()
		return nil, fmt.Errorf("backend %v: %w", cmd.Args, err)
	}
	return b, nil
}

// Done is closed when the backend has exited.
func (b *Backend) Done() <-chan struct{} { return b.done }

// Close stops the backend: SIGTERM, then SIGKILL to its process group
// after five seconds. It returns the backend's exit error if it did not
// exit cleanly on SIGTERM.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		select {
		case <-b.done:
			err = b.err
			return
		default:
		}
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
			err = b.err
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
			err = fmt.Errorf("backend did not exit within 5s of SIGTERM; killed")
		}
	})
	<-b.done
	return err
}
