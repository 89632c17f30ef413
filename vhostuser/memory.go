package vhostuser

import (
	"encoding/binary"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/virtio"
)

// region is one mapped piece of the guest's RAM: SET_MEM_TABLE's struct
// vhost_user_memory_region (le64 guest_phys_addr, memory_size,
// userspace_addr, mmap_offset) and its fd.
type region struct {
	gpa, size, uaddr, offset uint64
	mapping                  []byte // the whole mmap, from file offset 0
}

func (r *region) data() []byte { return r.mapping[r.offset : r.offset+r.size] }

// memTable is the guest's RAM as the front-end described it: checked
// guest-physical access for descriptors through a virtio.AddressSpace, and
// the front-end's userspace addresses for ring addresses.
type memTable struct {
	regions []region // sorted by uaddr
	as      *virtio.AddressSpace
}

// parseMemTable reads SET_MEM_TABLE's payload and maps each region from its
// fd. It takes ownership of fds: all are closed when it returns (a mapping
// outlives its descriptor).
func parseMemTable(name string, p []byte, fds []int) (mt *memTable, err error) {
	defer closeAll(fds)
	le := binary.LittleEndian
	if len(p) < 8 {
		return nil, protoErr(name, "payload of %d bytes, shorter than the 8-byte region count", len(p))
	}
	n := le.Uint32(p)
	if n == 0 || n > maxRegions {
		return nil, protoErr(name, "%d regions, want 1 to %d", n, maxRegions)
	}
	if want := 8 + 32*int(n); len(p) != want {
		return nil, protoErr(name, "payload of %d bytes for %d regions, want %d", len(p), n, want)
	}
	if len(fds) != int(n) {
		return nil, protoErr(name, "%d regions with %d file descriptors", n, len(fds))
	}
	mt = &memTable{}
	defer func() {
		if err != nil {
			mt.unmap()
			mt = nil
		}
	}()
	for i := range int(n) {
		e := p[8+32*i:]
		r := region{gpa: le.Uint64(e), size: le.Uint64(e[8:]), uaddr: le.Uint64(e[16:]), offset: le.Uint64(e[24:])}
		if err := mt.mapRegion(&r, fds[i]); err != nil {
			return nil, protoErr(name, "region %d (guest %#x, %d bytes, user %#x, offset %#x): %v", i, r.gpa, r.size, r.uaddr, r.offset, err)
		}
		mt.regions = append(mt.regions, r)
	}
	sort.Slice(mt.regions, func(i, j int) bool { return mt.regions[i].uaddr < mt.regions[j].uaddr })
	for i := 1; i < len(mt.regions); i++ {
		if a, b := &mt.regions[i-1], &mt.regions[i]; a.uaddr+a.size > b.uaddr {
			return nil, protoErr(name, "regions at user %#x and %#x overlap", a.uaddr, b.uaddr)
		}
	}
	vr := make([]virtio.Region, len(mt.regions))
	for i := range mt.regions {
		vr[i] = virtio.Region{Base: mt.regions[i].gpa, Data: mt.regions[i].data()}
	}
	if mt.as, err = virtio.NewAddressSpace(vr...); err != nil {
		return nil, protoErr(name, "%v", err)
	}
	return mt, nil
}

// mapRegion checks r against its file and maps it. The file must hold the
// whole region: touching a shared mapping past the end of its file kills
// the process with SIGBUS, so a front-end that lies about sizes must be
// refused here.
func (mt *memTable) mapRegion(r *region, fd int) error {
	switch {
	case r.size == 0:
		return fmt.Errorf("empty region")
	case r.gpa+r.size < r.gpa, r.uaddr+r.size < r.uaddr, r.offset+r.size < r.offset:
		return fmt.Errorf("region wraps the address space")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("file descriptor is not a regular file (mode %#o)", st.Mode)
	}
	end := r.offset + r.size
	if st.Size < 0 || uint64(st.Size) < end {
		return fmt.Errorf("file of %d bytes is shorter than offset+size %d", st.Size, end)
	}
	if end > 1<<47 {
		return fmt.Errorf("offset+size %d is beyond any address space", end)
	}
	// Map from file offset 0, as QEMU's libvhost-user does, so that an
	// offset that is not page-aligned still works.
	m, err := unix.Mmap(fd, 0, int(end), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %v", err)
	}
	r.mapping = m
	return nil
}

func (mt *memTable) unmap() {
	if mt == nil {
		return
	}
	for i := range mt.regions {
		if mt.regions[i].mapping != nil {
			_ = unix.Munmap(mt.regions[i].mapping)
			mt.regions[i].mapping = nil
		}
	}
}

// userToGuest translates a front-end userspace address of n bytes, which
// must lie inside one region, to a guest-physical address.
func (mt *memTable) userToGuest(uaddr, n uint64) (uint64, bool) {
	for i := range mt.regions {
		r := &mt.regions[i]
		if uaddr >= r.uaddr && uaddr-r.uaddr < r.size && n <= r.size-(uaddr-r.uaddr) {
			return r.gpa + (uaddr - r.uaddr), true
		}
	}
	return 0, false
}

// guestRAM is the virtio.Memory the device sees. The table behind it is
// swapped only on the world's goroutine, so the device never meets an
// unmapped region; with no table every access fails.
type guestRAM struct{ mt *memTable }

var _ virtio.Memory = (*guestRAM)(nil)

func (g *guestRAM) space(op string, addr, n uint64) (*virtio.AddressSpace, error) {
	if g.mt == nil {
		return nil, &virtio.AccessError{Op: op, Addr: addr, Len: n}
	}
	return g.mt.as, nil
}

func (g *guestRAM) ReadAt(p []byte, addr uint64) error {
	as, err := g.space("read", addr, uint64(len(p)))
	if err != nil {
		return err
	}
	return as.ReadAt(p, addr)
}

func (g *guestRAM) WriteAt(p []byte, addr uint64) error {
	as, err := g.space("write", addr, uint64(len(p)))
	if err != nil {
		return err
	}
	return as.WriteAt(p, addr)
}

func (g *guestRAM) Check(addr, n uint64) error {
	as, err := g.space("check", addr, n)
	if err != nil {
		return err
	}
	return as.Check(addr, n)
}

func (g *guestRAM) Slice(addr, n uint64) ([]byte, error) {
	as, err := g.space("slice", addr, n)
	if err != nil {
		return nil, err
	}
	return as.Slice(addr, n)
}
