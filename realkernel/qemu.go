package realkernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// VMConfig is one QEMU run.
type VMConfig struct {
	Kernel    Kernel
	Initramfs string
	// VhostSocket is the backend's vhost-user socket; empty boots without
	// a vsock device.
	VhostSocket string
	// MemoryMiB is the guest's RAM (default 256).
	MemoryMiB int
	// Append is added to the kernel command line.
	Append string
	// Echo receives every console line as it arrives (nil: none).
	Echo io.Writer
	// QEMU is the binary (default qemu-system-x86_64 on PATH).
	QEMU string
}

// VM is a running QEMU.
type VM struct {
	*child
	stdin     io.WriteCloser
	closeOnce sync.Once
}

// QEMUArgs is the command line for cfg: TCG, q35 with its RAM in a shared
// memfd (vhost-user needs the backend to map guest memory), the serial
// console on standard input and output, no default devices, and power-off
// ending QEMU.
func QEMUArgs(cfg VMConfig) []string {
	mem := cfg.MemoryMiB
	if mem == 0 {
		mem = 256
	}
	size := strconv.Itoa(mem) + "M"
	args := []string{
		"-accel", "tcg", "-m", size, "-smp", "1",
		"-object", "memory-backend-memfd,id=mem,size=" + size + ",share=on",
		"-machine", "q35,memory-backend=mem",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", cfg.Kernel.Vmlinuz, "-initrd", cfg.Initramfs,
		// no_timer_check: under TCG on a loaded machine the kernel's check
		// that the timer interrupt comes through the IO-APIC can miss and
		// panic the boot ("IO-APIC + timer doesn't work", seen once); the
		// parameter skips it (Linux arch/x86/kernel/apic/io_apic.c,
		// check_timer and the no_timer_check early parameter).
		"-append", "console=ttyS0 quiet panic=-1 no_timer_check " + cfg.Append,
	}
	if cfg.VhostSocket != "" {
		args = append(args, "-chardev", "socket,id=vsock0,path="+cfg.VhostSocket,
			"-device", "vhost-user-vsock-pci,chardev=vsock0")
	}
	return args
}

// Boot starts QEMU. It returns once the process runs; wait for kinit's
// markers with Expect. The process (and its process group) is killed when
// ctx ends or Close is called.
func Boot(ctx context.Context, cfg VMConfig) (*VM, error) {
	bin := cfg.QEMU
	if bin == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return nil, ErrNoQEMU
		}
		bin = p
	}
	cmd := exec.Command(bin, QEMUArgs(cfg)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	c, err := startChild(cmd, out, "console ", cfg.Echo)
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	vm := &VM{child: c, stdin: stdin}
	c.stopOn(ctx, func() { vm.Close() })
	return vm, nil
}

// Pid is QEMU's process ID (and its process group's).
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// Send writes one command line to the serial console.
func (vm *VM) Send(line string) error {
	_, err := io.WriteString(vm.stdin, line+"\n")
	return err
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit by itself (after kinit powered off) or for
// ctx; it returns QEMU's exit error.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.err
	case <-ctx.Done():
		return fmt.Errorf("qemu still running: %w", context.Cause(ctx))
	}
}

// Close kills QEMU and its process group and waits for it. It is safe to
// call more than once and after QEMU exited.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		select {
		case <-vm.done:
		default:
			_ = syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
		}
		_ = vm.stdin.Close()
	})
	<-vm.done
	var ee *exec.ExitError
	if errors.As(vm.err, &ee) {
		return nil // killed or failed: the console lines say why
	}
	return vm.err
}
