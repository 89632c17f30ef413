package device

import (
	"fmt"
	"strings"
)

// TXParse is how a device turns a TX descriptor chain into a packet.
type TXParse uint8

const (
	// TXFirecrackerLegacy: header in the head descriptor, payload in exactly
	// the next descriptor (FC@v1.5.1 packet.rs from_tx_virtq_head; docs/sources.md#fc-tx-parse-legacy).
	TXFirecrackerLegacy TXParse = iota
	// TXFirecracker: the whole chain is one byte string, any shape
	// (FC@v1.6.0 from_tx_virtq_head, FC@v1.16.1 VsockPacketTx::parse; docs/sources.md#fc-tx-parse).
	TXFirecracker
	// TXCloudHypervisor: header in the head descriptor; payload either the
	// rest of a lone head or exactly one data descriptor, further
	// descriptors never read (CH@v50.0 packet.rs from_tx_virtq_head; docs/sources.md#ch-tx-parse).
	TXCloudHypervisor
	// TXCloudHypervisorWalk: as TXCloudHypervisor, but two or more data
	// descriptors are walked and copied (CH@v51.0, PR #7680; docs/sources.md#ch-tx-parse).
	TXCloudHypervisorWalk
	// TXRustVMM: the rust-vmm virtio-vsock crate used by vhost-device-vsock
	// (rust-vmm/vm-virtio@049ef9fe virtio-vsock/src/packet.rs
	// from_tx_virtq_chain): header in the head; payload inline when the lone
	// head holds it, else exactly one data descriptor.
	TXRustVMM
)

func (p TXParse) String() string {
	return [...]string{"firecracker-legacy", "firecracker", "cloud-hypervisor", "cloud-hypervisor-walk", "rust-vmm"}[p]
}

// RXParse is how a device turns an RX descriptor chain into a buffer.
type RXParse uint8

const (
	// RXFirecrackerLegacy: header descriptor plus exactly one data
	// descriptor; a lone descriptor is BufDescMissing (FC@v1.5.1
	// from_rx_virtq_head; the 6.1.63 breakage, FC issue #4284; docs/sources.md#fc-rx-parse-legacy).
	RXFirecrackerLegacy RXParse = iota
	// RXFirecracker: any shape, header at chain offset 0 (FC@v1.16.1
	// VsockPacketRx::parse; docs/sources.md#fc-rx-parse).
	RXFirecracker
	// RXCloudHypervisor: header in the head; payload the next descriptor or
	// the rest of a lone head; a third descriptor is ignored (CH@v50.0
	// from_rx_virtq_head; docs/sources.md#ch-rx-parse).
	RXCloudHypervisor
	// RXCloudHypervisorStrict: as RXCloudHypervisor, but a data descriptor
	// with a successor is BufDescTooSmall (CH@v51.0 from_rx_virtq_head).
	RXCloudHypervisorStrict
	// RXRustVMM: rust-vmm virtio-vsock from_rx_virtq_chain (vm-virtio@049ef9fe).
	RXRustVMM
	// RXCloudHypervisorLegacy: the same rule as RXFirecrackerLegacy (a
	// header descriptor and a data descriptor; a lone descriptor is
	// BufDescMissing) with Cloud Hypervisor's bare log line and no header
	// length check (cloud-hypervisor v34.0 487a43cdeef3,
	// virtio-devices/src/vsock/packet.rs from_rx_virtq_head, device.rs
	// process_rx: warn!("vsock: RX queue error: {:?}"), used length 0).
	RXCloudHypervisorLegacy
)

func (p RXParse) String() string {
	return [...]string{"firecracker-legacy", "firecracker", "cloud-hypervisor", "cloud-hypervisor-strict", "rust-vmm", "cloud-hypervisor-legacy"}[p]
}

// PortPolicy is how host-initiated connections get their local port.
type PortPolicy uint8

const (
	// PortsFixedStart: local_port_last = 2^30 - 1 whenever a muxer is built,
	// restore included, so the first port is always 1073741824 (FC before
	// v1.15.0, CH; docs/sources.md#fc-port-allocation, #fc-persisted-ports).
	PortsFixedStart PortPolicy = iota
	// PortsPersisted: local_port_last is saved in the snapshot and allocation
	// continues after restore (FC v1.15.0+, PR #5688; docs/sources.md#fc-persisted-ports).
	PortsPersisted
	// PortsRandomStart: local_port_last = (random u32 &^ 2^31) | 2^30 at every
	// muxer build (Fly's fork, superfly/firecracker PR #7; docs/sources.md#fc-fly-random-port).
	PortsRandomStart
	// PortsFromZero: a wrapping counter from 0 that skips ports in use;
	// guest-initiated connections mark their port used too
	// (VD@d7ec5e4 vhu_vsock_thread.rs allocate_local_port,
	// thread_backend.rs add_new_guest_conn).
	PortsFromZero
)

func (p PortPolicy) String() string {
	return [...]string{"fixed-start", "persisted", "random-start", "from-zero"}[p]
}

// RXGateMode is whether RX is held after a transport reset until the guest
// acknowledges it by notifying the event queue.
type RXGateMode uint8

const (
	// RXGateNone: no gate (FC before v1.16.0, CH, vhost-device-vsock).
	RXGateNone RXGateMode = iota
	// RXGateArmedOnKick: armed when the reset is published and on every
	// resume kick, cleared by any event-queue notify, not persisted
	// (FC v1.16.0/v1.16.1, PR #5882; docs/sources.md#fc-rx-gate).
	RXGateArmedOnKick
	// RXGatePersisted: armed when the reset is published, saved in the
	// snapshot; the resume kick only re-signals the event queue when it is
	// set (FC main, PR #6100, unreleased; docs/sources.md#fc-rx-gate).
	RXGatePersisted
)

func (m RXGateMode) String() string {
	return [...]string{"none", "armed-on-kick", "persisted"}[m]
}

// ResetEvent is when (and whether) a snapshot posts TRANSPORT_RESET.
type ResetEvent uint8

const (
	// ResetNone: no event at all (CH: snapshot() only serialises state,
	// CH@v50.0 device.rs; vhost-device-vsock has no snapshot support).
	ResetNone ResetEvent = iota
	// ResetAfterSave: posted after the device state was captured, so the
	// saved event-queue position predates it (FC v1.5.1..v1.9.x,
	// src/vmm/src/device_manager/persist.rs; docs/sources.md#fc-reset-on-snapshot).
	ResetAfterSave
	// ResetBeforeSave: posted, then the state captured (FC v1.10.0+; from
	// v1.15.0 in prepare_save; docs/sources.md#fc-reset-on-snapshot).
	ResetBeforeSave
)

func (r ResetEvent) String() string {
	return [...]string{"none", "after-save", "before-save"}[r]
}

// GuestChecks is how the muxer screens guest packets before routing them.
type GuestChecks uint8

const (
	// ChecksFirecracker: non-STREAM -> RST; dst_cid != 2 -> drop; unknown
	// key and not REQUEST -> RST; refused connect -> RST (FC@v1.14.0
	// unix/muxer.rs send_pkt; docs/sources.md#fc-muxer-checks).
	ChecksFirecracker GuestChecks = iota
	// ChecksVhostUser: src_cid != guest CID -> drop; dst_cid != 2 -> drop
	// (sibling-VM forwarding is not modelled); non-STREAM -> drop; unknown
	// key and not REQUEST -> drop; a refused connect sends nothing (the RST
	// is a TODO in the source) (VD@d7ec5e4 thread_backend.rs send_pkt,
	// handle_new_guest_conn, enq_rst).
	ChecksVhostUser
)

// ConnectLineReader is how the CONNECT line of a host-initiated connection
// is read.
type ConnectLineReader uint8

const (
	// LineFirecracker: 10 bytes with read_exact, then byte by byte up to '\n'
	// or 32 bytes; bytes after '\n' stay in the socket (FC@v1.14.0
	// unix/muxer.rs read_local_stream_port; docs/sources.md#fc-connect-line).
	LineFirecracker ConnectLineReader = iota
	// LineBufReader: BufReader::read_until('\n'): everything readable is
	// pulled into an 8 KiB buffer that is then dropped, so bytes after '\n'
	// are lost (VD@d7ec5e4 vhu_vsock_thread.rs read_local_stream_port).
	LineBufReader
)

// AckPort is which port the "OK <port>\n" acknowledgement names.
type AckPort uint8

const (
	// AckLocalPort: the host-side port the device allocated (FC@v1.14.0
	// unix/muxer.rs apply_conn_mutation; docs/sources.md#fc-ok-ack).
	AckLocalPort AckPort = iota
	// AckPeerPort: the guest port from the CONNECT line (VD@d7ec5e4
	// vsock_conn.rs send_pkt: format!("OK {}\n", self.peer_port)).
	AckPeerPort
)

// Profile is one device build's vsock behaviour, as data.
type Profile struct {
	Name   string
	Source string // what it models: project, versions, files, PRs

	TX TXParse
	RX RXParse
	// LeakBadTXChains: a TX chain that fails to parse is never returned to
	// the used ring (VD@d7ec5e4 vhu_vsock_thread.rs process_tx_queue:
	// `continue` without add_used).
	LeakBadTXChains bool
	Ports           PortPolicy
	RXGate          RXGateMode
	// DuplicateOnPartialWrite: the pre-v1.14.0 iovec copy, where an error
	// on the second or later iovec discards the count of bytes already
	// moved: a WouldBlock mid-payload re-buffers bytes the host already got
	// (TX), and bytes read into an earlier RX iovec are lost (FC issue
	// #5475; fixed by 8e74e7d5c "fix(iovec): do not return error if some
	// bytes were written", PR #5485, first tagged v1.14.0).
	DuplicateOnPartialWrite bool
	// HaltOnShortInlineTX: a lone TX descriptor shorter than 44+hdr.len is
	// accepted and the worker panics when the payload is forwarded (CH
	// v35..v51; fixed in v52.0 by 9f405a21a "Add bounds check on inline TX
	// path"). Modelled as the device halting.
	HaltOnShortInlineTX bool
	// RXDrain: after a read the Rw bit stays set, so one readiness drains
	// the stream (FC main, PR #6041/#6077; docs/sources.md#fc-recv-pkt). Released versions
	// emit one RW per readiness and rely on level-triggered epoll.
	RXDrain bool
	// ResetInPlace: the device implements the virtio reset (FC main,
	// c4fdd7c90, unreleased): Device.Reset drops every connection and
	// restarts local_port_last at 2^30 - 1. Released versions cannot be
	// reset.
	ResetInPlace bool
	// KillClearsTxBuf: kill() also discards the TX buffer (FC main commit
	// 65c2ec472; docs/sources.md#fc-polled-evset).
	KillClearsTxBuf bool
	Reset           ResetEvent
	// NoSnapshot: no VMM can snapshot a VM with this device, so a world
	// refuses to suspend (emu.World.Suspend gives ErrSnapshotUnsupported).
	// vhost-device-vsock: QEMU registers its vhost-user-vsock front-end as
	// unmigratable (QEMU v7.2.0 hw/virtio/vhost-user-vsock.c, vuv_vmstate
	// .unmigratable = 1; docs/sources.md#qemu-vhost-user-vsock), and savevm
	// and migration both refuse such a device.
	NoSnapshot bool
	// ResumeSignalsEventQueue: the resume kick raises the event-queue
	// interrupt so the guest sees the reset (FC v1.10.0+ device_manager
	// "kick vsock", the device's kick() from v1.13.0; docs/sources.md#fc-reset-on-snapshot).
	ResumeSignalsEventQueue bool
	// ResumeReplaysTX: the resume kick replays the TX queue notification
	// (FC v1.16.1, PR #5958; docs/sources.md#fc-rx-gate).
	ResumeReplaysTX bool
	Checks          GuestChecks
	ConnectLine     ConnectLineReader
	Ack             AckPort
	// HaltOnAckWriteError: a failed write of the OK line panics the worker
	// (VD@d7ec5e4 vsock_conn.rs: write_all(..).unwrap()). Without it the
	// connection is killed (FC).
	HaltOnAckWriteError bool
	// CreditUpdateThreshold: a CREDIT_UPDATE is due when the free space the
	// peer last heard of falls below this (FC/CH CONN_CREDIT_UPDATE_THRESHOLD
	// 4096; vhost-device-vsock tx_buffer_size/4 = 16384, VD@d7ec5e4
	// vsock_conn.rs send_bytes).
	CreditUpdateThreshold uint32
	// MaxConnections caps the muxer's connection map; 0 is the cap of every
	// modelled device, Firecracker's MAX_CONNECTIONS of 1,023 (FC unix/mod.rs,
	// inherited by Cloud Hypervisor; docs/sources.md#fc-muxer). Raising it models no real
	// device: it exists for scale experiments such as 10,000 connections in
	// one world.
	MaxConnections int
}

// maxConns is the connection limit in force.
func (p *Profile) maxConns() int {
	if p.MaxConnections > 0 {
		return p.MaxConnections
	}
	return maxConnections
}

// rxCommitChecksLen: Firecracker refuses to commit an RX header whose len
// exceeds 64 KiB (FC@v1.16.1 packet.rs commit_hdr, FC@v1.5.1 check_len);
// Cloud Hypervisor and rust-vmm write the header in place unchecked.
func (p *Profile) rxCommitChecksLen() bool {
	return p.RX == RXFirecracker || p.RX == RXFirecrackerLegacy
}

// rxErrorSuffix is what Firecracker appends to its RX parse warning
// (FC@v1.16.1 device.rs process_rx); CH and vhost-device-vsock log the bare
// error.
func (p *Profile) rxErrorSuffix() string {
	if p.rxCommitChecksLen() {
		return ". Discarding the package."
	}
	return ""
}

// fixedIovecs: a transfer error after some bytes returns the count (v1.14.0+
// iovec.rs read_volatile_at / write_volatile_at).
func (p *Profile) fixedIovecs() bool { return !p.DuplicateOnPartialWrite }

const fcSources = "FC = firecracker-microvm/firecracker, paths under src/vmm/src/devices/virtio/vsock/; evidence: docs/sources.md#firecracker"

var profiles = []Profile{
	{
		Name:                  "firecracker-1.5",
		Source:                "Firecracker v1.5.x (FC@v1.5.1 2f684592cf13): packet.rs from_tx_virtq_head/from_rx_virtq_head need a header descriptor plus exactly one data descriptor (single-descriptor RX from 6.1.63+ guests fails BufDescMissing, issue #4284); payload is one buffer, so the v1.6..v1.13 iovec bug cannot arise; ports restart at 2^30 on restore; TRANSPORT_RESET posted after the state is saved and not re-signalled on resume (src/vmm/src/device_manager/persist.rs). " + fcSources,
		TX:                    TXFirecrackerLegacy,
		RX:                    RXFirecrackerLegacy,
		Ports:                 PortsFixedStart,
		Reset:                 ResetAfterSave,
		CreditUpdateThreshold: 4096,
	},
	{
		Name:                    "firecracker-1.13",
		Source:                  "Firecracker v1.10.0..v1.13.x (FC@v1.10.0 791763f545dd, v1.13.x): any-shape chains (PR #4310, v1.6.0) with the iovec partial-transfer bug (iovec.rs before PR #5485: WouldBlock on a later payload iovec re-buffers the earlier ones, issue #5475); reset before save and signalled on resume (PR #4796); fixed-start ports. " + fcSources,
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsFixedStart,
		DuplicateOnPartialWrite: true,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                    "firecracker-1.14",
		Source:                  "Firecracker v1.14.x (FC@v1.14.0 7137308817dc): any-shape chains, iovec fix PR #5485; fixed-start ports (local_port_last not saved before v1.15.0). " + fcSources,
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsFixedStart,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                    "firecracker-1.15",
		Source:                  "Firecracker v1.15.x (FC@v1.15.0 7db02adc28ea): local_port_last saved in VsockBackendState and restored (PR #5688, backported), reset from prepare_save. " + fcSources,
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsPersisted,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                    "firecracker-1.16",
		Source:                  "Firecracker v1.16.1 (FC@v1.16.1 2038188f145f): RX gate pending_event_ack (PR #5882) armed on reset and on every kick(), cleared by any event-queue notify, not persisted; kick() replays the TX notification (PR #5958, not in v1.16.0); ports persisted. " + fcSources,
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsPersisted,
		RXGate:                  RXGateArmedOnKick,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		ResumeReplaysTX:         true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                    "firecracker-main",
		Source:                  "Firecracker main, unreleased (FC@main 81b38b9dad60): RX gate persisted, kick re-signals only when armed (PR #6100); one readiness drains the host stream (PR #6041/#6077); kill() clears the TX buffer (65c2ec472); the virtio device reset drops every connection and sets local_port_last back to 2^30 - 1 (c4fdd7c90, VsockBackend::reset). " + fcSources,
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsPersisted,
		RXGate:                  RXGatePersisted,
		RXDrain:                 true,
		KillClearsTxBuf:         true,
		ResetInPlace:            true,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		ResumeReplaysTX:         true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                    "firecracker-fly",
		Source:                  "Fly's fork superfly/firecracker, PR #7 \"vmm: start with random local vsock port\" (merged 2025-10-13, known from the PR corpus only): local_port_last = (getrandom u32 &^ 2^31) | 2^30 in the muxer constructor, so every boot and restore starts at a random port. UNVERIFIED base version: modelled as Firecracker v1.14 (the PR's diff context looks pre-1.15; a v1.15+ base would overwrite the random start with the saved value on restore); see docs/sources.md#fc-fly-random-port.",
		TX:                      TXFirecracker,
		RX:                      RXFirecracker,
		Ports:                   PortsRandomStart,
		Reset:                   ResetBeforeSave,
		ResumeSignalsEventQueue: true,
		CreditUpdateThreshold:   4096,
	},
	{
		Name:                  "cloud-hypervisor-50",
		Source:                "Cloud Hypervisor v35.0..v50.x (CH@v50.0 9a24680abdfe virtio-devices/src/vsock/packet.rs, PR #5692): header in the head descriptor, payload a lone head's tail or exactly one data descriptor; a nonlinear header+32K+32K packet fails BufDescTooSmall, used 0, no RST; a lone descriptor shorter than 44+len panics the worker when forwarded (fixed v52.0, 9f405a21a); no TRANSPORT_RESET on snapshot (device.rs snapshot() only saves state); csm/muxer as Firecracker's, fixed-start ports; see docs/sources.md#ch-tx-parse, #ch-snapshot.",
		TX:                    TXCloudHypervisor,
		RX:                    RXCloudHypervisor,
		Ports:                 PortsFixedStart,
		HaltOnShortInlineTX:   true,
		Reset:                 ResetNone,
		CreditUpdateThreshold: 4096,
	},
	{
		Name:                  "cloud-hypervisor-51",
		Source:                "Cloud Hypervisor v51.x (CH@v51.0 00e106e53e7b, PR #7680 bf6f0f835): TX walks two or more data descriptors into an owned buffer; RX rejects a data descriptor with a successor (BufDescTooSmall); the lone-descriptor panic remains until v52.0; see docs/sources.md#ch-tx-parse, #ch-rx-parse.",
		TX:                    TXCloudHypervisorWalk,
		RX:                    RXCloudHypervisorStrict,
		Ports:                 PortsFixedStart,
		HaltOnShortInlineTX:   true,
		Reset:                 ResetNone,
		CreditUpdateThreshold: 4096,
	},
	{
		Name:                  "cloud-hypervisor-52",
		Source:                "Cloud Hypervisor v52.0+ (CH@v52.0 1314ac883c64): as v51 plus the inline TX bounds check (9f405a21a): a short lone descriptor is BufDescTooSmall; see docs/sources.md#ch-tx-parse.",
		TX:                    TXCloudHypervisorWalk,
		RX:                    RXCloudHypervisorStrict,
		Ports:                 PortsFixedStart,
		Reset:                 ResetNone,
		CreditUpdateThreshold: 4096,
	},
	{
		Name:                  "vhost-device-vsock",
		Source:                "rust-vmm/vhost-device vhost-device-vsock (VD@d7ec5e4a800b, 2026-07-16; vhost-device-vsock/src/): rust-vmm virtio-vsock 0.12 chain parsing (vm-virtio@049ef9fe virtio-vsock/src/packet.rs); a TX chain that fails to parse is never added to the used ring (vhu_vsock_thread.rs process_tx_queue); host ports from 0 upward skipping used ones, guest-initiated ports marked used (allocate_local_port, thread_backend.rs); ack \"OK <guest port>\\n\" written with write_all().unwrap() (vsock_conn.rs); CONNECT line read through a BufReader that drops bytes after '\\n'; non-stream, orphan and refused packets dropped without RST; CREDIT_UPDATE threshold tx_buffer_size/4. Connection state machine, TX buffer, timers and kill queue are MODELLED AS FIRECRACKER'S (vhost-device-vsock's own differ: no request/shutdown timers, per-connection RxOps queue): an approximation.",
		TX:                    TXRustVMM,
		RX:                    RXRustVMM,
		LeakBadTXChains:       true,
		Ports:                 PortsFromZero,
		Reset:                 ResetNone,
		NoSnapshot:            true,
		Checks:                ChecksVhostUser,
		ConnectLine:           LineBufReader,
		Ack:                   AckPeerPort,
		HaltOnAckWriteError:   true,
		CreditUpdateThreshold: 16384,
	},
	{
		Name:                  "cloud-hypervisor-34",
		Source:                "Cloud Hypervisor up to v34.x (CH@v34.0 487a43cdeef3, 2023-08-10): virtio-devices/src/vsock/packet.rs from_rx_virtq_head requires a header descriptor and a data descriptor, so the single-descriptor RX buffers of Linux 6.3+ (71dc9ec9ac7d; 6.1.63+) fail BufDescMissing, are returned with used length 0 and reposted, forever (issue #5691); from_tx_virtq_head takes the header and exactly one data descriptor. Fixed in v35.0 by a2752fe04 \"virtio-devices: vsock: Support single descriptor\" (PR #5692). No TRANSPORT_RESET on snapshot; fixed-start ports.",
		TX:                    TXFirecrackerLegacy,
		RX:                    RXCloudHypervisorLegacy,
		Ports:                 PortsFixedStart,
		Reset:                 ResetNone,
		CreditUpdateThreshold: 4096,
	},
}

// Profiles returns every named device profile, in a stable order.
func Profiles() []Profile { return append([]Profile(nil), profiles...) }

// LookupProfile finds a device profile by name.
func LookupProfile(name string) (Profile, error) {
	names := make([]string, 0, len(profiles))
	for _, p := range profiles {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("unknown device profile %q (known: %s)", name, strings.Join(names, ", "))
}
