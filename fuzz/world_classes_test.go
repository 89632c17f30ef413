package fuzz

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
)

func kernelIndex(name string) byte {
	for i, p := range guest.Profiles() {
		if p.Name == name {
			return byte(i)
		}
	}
	panic("no kernel profile " + name)
}

// worldCase is a configuration of the space, chosen through Choices, and
// the oracle it must fail ("" for none): each of the library's incident
// classes is reachable from the space, and the same configuration on the
// fixed profile holds. The search itself knows none of this; these are
// regression tests of the space and the oracles.
type worldCase struct {
	name   string
	device string
	kernel string
	set    map[int]byte
	oracle string
}

var worldCases = []worldCase{
	{"receive-queue limit, SO_RCVLOWAT reader (testdata/incidents/rx-queue-limit-credit-leak.trace)", "firecracker-1.14", "linux-7.1-rc3",
		map[int]byte{ChoiceStream: 1, ChoiceStreamTotal: 7, ChoiceStreamSize: 6, ChoiceRcvlowat: 3}, "stream-stalled"},
	{"the same on the fixed kernel", "firecracker-1.14", "linux-7.0-reset",
		map[int]byte{ChoiceStream: 1, ChoiceStreamTotal: 7, ChoiceStreamSize: 6, ChoiceRcvlowat: 3}, ""},
	{"receive-queue limit, slow reader", "firecracker-1.14", "linux-7.1-rc3",
		map[int]byte{ChoiceStream: 1, ChoiceStreamTotal: 7, ChoiceStreamSize: 6, ChoiceReadSize: 3, ChoiceReadEvery: 2}, "stream-corrupt"},
	{"Firecracker #5475, slow host reader (testdata/incidents/fc-partial-write-dup.trace)", "firecracker-1.13", "linux-6.12.68",
		map[int]byte{ChoiceStream: 2, ChoiceStreamTotal: 7, ChoiceStreamSize: 6, ChoiceReadSize: 3, ChoiceReadEvery: 2}, "stream-corrupt"},
	{"the same on v1.14", "firecracker-1.14", "linux-6.12.68",
		map[int]byte{ChoiceStream: 2, ChoiceStreamTotal: 7, ChoiceStreamSize: 6, ChoiceReadSize: 3, ChoiceReadEvery: 2}, ""},
	{"device reset with leaked sockets (testdata/incidents/device-reset-ports.trace)", "firecracker-main", "linux-6.12.68",
		map[int]byte{ChoiceInit: 8, ChoiceCycles: 2, ChoiceDwell: 10, ChoiceReset: 1, ChoiceProbes: 3}, "connect-refused"},
	{"the same without the reset (ports persist across snapshots)", "firecracker-main", "linux-6.12.68",
		map[int]byte{ChoiceInit: 8, ChoiceCycles: 2, ChoiceDwell: 10, ChoiceProbes: 3}, ""},
	{"the same with init closing reset sockets", "firecracker-main", "linux-6.12.68",
		map[int]byte{ChoiceCycles: 2, ChoiceDwell: 10, ChoiceReset: 1, ChoiceProbes: 3}, ""},
	{"ENOBUFS reset: small packets into an unread socket", "firecracker-1.14", "linux-7.0-reset",
		map[int]byte{ChoiceStream: 1, ChoiceStreamTotal: 7, ChoiceStreamSize: 0, ChoiceStreamEvery: 1, ChoiceReadEvery: 7}, "stream-reset"},
	{"the same before the receive-queue limit", "firecracker-1.14", "linux-6.12.68",
		map[int]byte{ChoiceStream: 1, ChoiceStreamTotal: 7, ChoiceStreamSize: 0, ChoiceStreamEvery: 1, ChoiceReadEvery: 7}, ""},
	{"vhost-device-vsock with nonlinear TX, init's stdout (testdata/incidents/vd-nonlinear-tx.trace)", "vhost-device-vsock", "linux-debian-6.12.117",
		map[int]byte{ChoiceInit: 1, ChoiceTotal: 6, ChoiceSize: 6, ChoiceEvery: 10}, "stdout-blocked"},
	{"the same with a linear-TX kernel", "vhost-device-vsock", "linux-debian-6.1.192",
		map[int]byte{ChoiceInit: 1, ChoiceTotal: 6, ChoiceSize: 6, ChoiceEvery: 10}, ""},
	{"vhost-device-vsock with nonlinear TX, a guest-to-host stream", "vhost-device-vsock", "linux-6.17",
		map[int]byte{ChoiceStream: 2, ChoiceStreamTotal: 7, ChoiceStreamSize: 6}, "stream-stalled"},
	{"the same in 32 KiB writes (one fragment each)", "vhost-device-vsock", "linux-6.17",
		map[int]byte{ChoiceStream: 2, ChoiceStreamTotal: 7, ChoiceStreamSize: 4}, ""},
	{"vhost-device-vsock: no suspend/resume cycles (QEMU cannot snapshot it), whatever the input", "vhost-device-vsock", "linux-5.15",
		map[int]byte{ChoiceInit: 1, ChoiceCycles: 7, ChoiceDwell: 14, ChoicePause: 6, ChoiceProbes: 3}, ""},
	{"Firecracker #4284 (testdata/incidents/fc-rx-single-descriptor.trace)", "firecracker-1.5", "linux-debian-6.1.192", nil, "start-failed"},
	{"the same with a two-descriptor kernel", "firecracker-1.5", "linux-5.15", nil, ""},
	{"Cloud Hypervisor restore, a stale socket (testdata/incidents/restore-stale-socket.trace)", "cloud-hypervisor-51", "linux-6.12.68",
		map[int]byte{ChoiceSeed: 99, ChoiceInit: 0xf0, ChoiceTotal: 7, ChoiceSize: 3, ChoiceEvery: 21, ChoiceCycles: 2, ChoiceDwell: 22, ChoicePause: 8, ChoiceProbes: 2}, "connect-refused"},
	{"the same on Firecracker 1.14, which posts the reset", "firecracker-1.14", "linux-6.12.68",
		map[int]byte{ChoiceSeed: 99, ChoiceInit: 0xf0, ChoiceTotal: 7, ChoiceSize: 3, ChoiceEvery: 21, ChoiceCycles: 2, ChoiceDwell: 22, ChoicePause: 8, ChoiceProbes: 2}, ""},
	{"a guest that closes before a slow host reader took its stream (testdata/incidents/close-tail-loss.trace)", "cloud-hypervisor-52", "linux-debian-6.12.117",
		map[int]byte{ChoiceSeed: 17, ChoiceInit: 0xc9, ChoiceTotal: 6, ChoiceSize: 0, ChoiceEvery: 38, ChoiceCycles: 5, ChoiceDwell: 27, ChoicePause: 7,
			ChoiceStream: 2, ChoiceStreamTotal: 4, ChoiceStreamSize: 5, ChoiceStreamEvery: 1, ChoiceReadSize: 1, ChoiceReadEvery: 3}, "stream-lost"},
	{"the same with a reader that keeps up", "cloud-hypervisor-52", "linux-debian-6.12.117",
		map[int]byte{ChoiceSeed: 17, ChoiceInit: 0xc9, ChoiceTotal: 6, ChoiceSize: 0, ChoiceEvery: 38, ChoiceCycles: 5, ChoiceDwell: 27, ChoicePause: 7,
			ChoiceStream: 2, ChoiceStreamTotal: 4, ChoiceStreamSize: 5, ChoiceStreamEvery: 1, ChoiceReadSize: 1, ChoiceReadEvery: 0}, ""},
	{"Cloud Hypervisor #5691 (testdata/incidents/ch-rx-single-descriptor.trace)", "cloud-hypervisor-34", "linux-6.6", nil, "start-failed"},
	{"the same with a two-descriptor kernel", "cloud-hypervisor-34", "linux-5.15", nil, ""},
}

func TestWorldReachesTheIncidentClasses(t *testing.T) {
	for _, wc := range worldCases {
		t.Run(wc.name, func(t *testing.T) {
			var c Choices
			c[ChoiceDevice], c[ChoiceKernel] = profileIndex(wc.device), kernelIndex(wc.kernel)
			for i, v := range wc.set {
				c[i] = v
			}
			w := DecodeWorld(c)
			require.Equal(t, wc.device, w.Device)
			require.Equal(t, wc.kernel, w.Kernel)
			err := CheckWorld(lab.T(t), c)
			if wc.oracle == "" {
				require.NoError(t, err, "%s", w)
				return
			}
			var f *Finding
			require.True(t, errors.As(err, &f), "want oracle %s, got %v\n%s", wc.oracle, err, w)
			require.Equal(t, wc.oracle, f.Oracle, "%v", err)
		})
	}
}

func TestWorldFindsTheWedge(t *testing.T) {
	// Seed 000's configuration, chosen through the input: Cloud Hypervisor
	// 50, Linux 6.12.68, init without its write timeout, 64 KiB writes.
	c := Choices{ChoiceDevice: profileIndex("cloud-hypervisor-50"), ChoiceInit: 1, ChoiceTotal: 6, ChoiceSize: 6, ChoiceEvery: 10}
	for k := 0; k < 256 && DecodeWorld(c).Kernel != "linux-6.12.68"; k++ {
		c[ChoiceKernel] = byte(k)
	}
	require.Equal(t, "linux-6.12.68", DecodeWorld(c).Kernel)
	err := CheckWorld(lab.T(t), c)
	var finding *Finding
	require.ErrorAs(t, err, &finding)
	require.Equal(t, "stdout-blocked", finding.Oracle, "%v", err)

	// The finding's trace replays to the same outputs.
	f, perr := replay.Parse("finding.trace", finding.Trace)
	require.NoError(t, perr)
	res := replay.RunFile(lab.T(t), f, replay.Options{})
	require.Empty(t, res.Diff())
}
