// Package realkernel boots real Linux kernels under QEMU's TCG against this
// repository's vhost-user vsock backend, so that the unmodified
// virtio-vsock driver of a Debian cloud kernel drives the device model
// over real split virtqueues.
//
// The pieces, each usable alone:
//   - Kernel: a kernel cached by scripts/realkernel-install.sh in the
//     clone's .realkernel/ directory (vmlinuz, the vsock modules, their
//     load order). FindKernels lists them.
//   - Initramfs: a newc cpio archive holding kinit (realkernel/kinit, a
//     static Go PID 1 that loads the modules with finit_module and runs the
//     program under test), the modules, further programs (the real
//     guestinit) and kinit's configuration.
//   - Boot: qemu-system-x86_64 -accel tcg with a shared memfd memory backend
//     and vhost-user-vsock-pci on a vhost-user socket, its serial console
//     read line by line (kinit's markers start with "kinit: ") and written
//     to (kinit's commands: "reset", "poweroff"), killed with its whole
//     process group on Close or when its context ends.
//   - Backend: `vsocklab vhost-user` as a process, the host side of the
//     device on a Firecracker hybrid vsock Unix socket.
//
// StdoutRun and ResumeVerdict judge runs with the verdict words of
// `vsocklab replay` (wedged, degraded, ok; grows, bounded).
//
// The tests of this package run only with VSOCKLAB_REALKERNEL=1 and skip,
// naming what is missing, without qemu-system-x86_64 or the cached
// kernels: run scripts/realkernel-install.sh first (as root it installs
// the pinned packages). TestSeed000 and TestSeed003 replay the two seed
// incidents with the real guestinit and hostd on both kernels;
// TestProbeConformance sets a real kernel's packets beside the nearest
// guest model profile's; TestConformance runs the conformance cases of
// package internal/conform (kinit cases) in one boot of each kernel and
// on its profile, and requires every case's packets to agree
// (docs/conformance.md). BenchmarkBootToPID1 and BenchmarkGuestStream64K
// measure boot time and a guest-to-host stream (BENCHMARKS.md).
package realkernel

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel is one cached kernel.
type Kernel struct {
	// Release is the kernel release, e.g. "6.12.117+deb12-cloud-amd64".
	Release string
	// Package is the Debian package and version it came from.
	Package string
	// Vmlinuz is the path of the kernel image.
	Vmlinuz string
	// Modules are the module files to load, in order.
	Modules []string
}

// Short is the release's version, e.g. "6.12.117" or "6.1.0-56"; the
// package's upstream version is in Package.
func (k Kernel) Short() string {
	v, _, _ := strings.Cut(k.Release, "+")
	v = strings.TrimSuffix(v, "-cloud-amd64")
	return v
}

// Series is "6.12" or "6.1".
func (k Kernel) Series() string {
	f := strings.SplitN(k.Release, ".", 3)
	if len(f) < 2 {
		return k.Release
	}
	return f[0] + "." + f[1]
}

// CacheDir finds the clone's .realkernel directory: from dir upwards, the
// first directory holding go.mod.
func CacheDir(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, ".realkernel"), nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = parent
	}
}

// FindKernels lists the kernels cached in cache, sorted by release.
func FindKernels(cache string) ([]Kernel, error) {
	ents, err := os.ReadDir(cache)
	if err != nil {
		return nil, err
	}
	var out []Kernel
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := LoadKernel(filepath.Join(cache, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Release < out[j].Release })
	return out, nil
}

// LoadKernel reads one kernel's cache directory.
func LoadKernel(dir string) (Kernel, error) {
	k := Kernel{Release: filepath.Base(dir), Vmlinuz: filepath.Join(dir, "vmlinuz")}
	pkg, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return k, fmt.Errorf("kernel cache %s is incomplete (run scripts/realkernel-install.sh): %w", dir, err)
	}
	k.Package = strings.TrimSpace(string(pkg))
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return k, fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, "modules.order"))
	if err != nil {
		return k, fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if strings.ContainsRune(name, '/') {
			return k, fmt.Errorf("%s/modules.order line %d: %q is not a file name", dir, n, name)
		}
		p := filepath.Join(dir, "modules", name)
		if _, err := os.Stat(p); err != nil {
			return k, fmt.Errorf("%s/modules.order line %d: %w", dir, n, err)
		}
		k.Modules = append(k.Modules, p)
	}
	return k, sc.Err()
}

// KernelBySeries picks the cached kernel of a series ("6.12", "6.1").
func KernelBySeries(ks []Kernel, series string) (Kernel, error) {
	for _, k := range ks {
		if k.Series() == series {
			return k, nil
		}
	}
	var have []string
	for _, k := range ks {
		have = append(have, k.Release)
	}
	return Kernel{}, fmt.Errorf("no cached %s kernel (have %s); run scripts/realkernel-install.sh", series, orNone(have))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// ErrNoQEMU says qemu-system-x86_64 is not on PATH.
var ErrNoQEMU = errors.New("qemu-system-x86_64 not found on PATH (Debian package qemu-system-x86; scripts/realkernel-install.sh installs it as root)")
