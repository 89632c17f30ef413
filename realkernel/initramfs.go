package realkernel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
)

// KinitConfig is kinit's configuration, /kinit.json in the initramfs.
type KinitConfig struct {
	// Modules are paths inside the initramfs, in load order.
	Modules []string `json:"modules"`
	// Run is the program under test and its arguments, paths inside the
	// initramfs (none: power off once the modules are loaded, unless
	// StayUp).
	Run []string `json:"run,omitempty"`
	// StayUp keeps the machine running after Run exits, until a poweroff
	// command.
	StayUp bool `json:"stay_up,omitempty"`
}

// Initramfs describes one initramfs.
type Initramfs struct {
	// Kinit is the path of the static kinit binary (realkernel/kinit).
	Kinit string
	// Kernel supplies the modules.
	Kernel Kernel
	// Programs are further files, by their path inside the initramfs
	// (e.g. "/bin/guestinit") to the host file.
	Programs map[string]string
	// Run is the program under test (KinitConfig.Run).
	Run []string
	// StayUp: see KinitConfig.
	StayUp bool
}

// Write builds the archive at dst. kinit is /init and also /bin/kinit, so
// that its subcommands (the workload, the stream probe) can be run.
func (in Initramfs) Write(dst string) error {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	for _, d := range []string{"dev", "proc", "sys", "bin", "tmp", "lib/modules"} {
		c.Dir(d, 0o755)
	}
	// The kernel opens /dev/console for PID 1's standard streams before
	// any devtmpfs exists (Linux init/main.c, console_on_rootfs, v6.12).
	c.CharDev("dev/console", 0o600, 5, 1)
	kinit, err := os.ReadFile(in.Kinit)
	if err != nil {
		return fmt.Errorf("initramfs: kinit: %w", err)
	}
	c.File("init", 0o755, kinit)
	c.File("bin/kinit", 0o755, kinit)
	cfg := KinitConfig{Run: in.Run, StayUp: in.StayUp}
	for _, m := range in.Kernel.Modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("initramfs: module: %w", err)
		}
		p := path.Join("lib/modules", filepath.Base(m))
		c.File(p, 0o644, b)
		cfg.Modules = append(cfg.Modules, "/"+p)
	}
	names := make([]string, 0, len(in.Programs))
	for name := range in.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := os.ReadFile(in.Programs[name])
		if err != nil {
			return fmt.Errorf("initramfs: program %s: %w", name, err)
		}
		c.File(name, 0o755, b)
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	c.File("kinit.json", 0o644, js)
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// BuildStatic builds the Go main package pkg (an import path or a
// directory relative to dir) as a static binary at out, CGO_ENABLED=0,
// for the guest.
func BuildStatic(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
