package replay

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/virtio"
)

// TestCapturesDecodeInTshark writes each incident scenario's capture and
// has tshark (Wireshark's vsock dissector, packet-vsock.c) decode it: no
// malformed packets, and the count of each op and the RW payload bytes per
// direction must match the replay's own counters. .ci/run installs tshark;
// without it the test is skipped.
func TestCapturesDecodeInTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install tshark)")
	}
	dir := t.TempDir()
	for _, path := range incidentFiles(t) {
		res := replayFile(t, path, Options{Capture: true})
		for _, sc := range res.Scenarios {
			t.Run(sc.Report.Name, func(t *testing.T) {
				pcap := filepath.Join(dir, sc.Report.Name+".pcap")
				var buf bytes.Buffer
				require.NoError(t, WritePcap(&buf, sc.Packets))
				require.NoError(t, os.WriteFile(pcap, buf.Bytes(), 0o644))

				malformed, err := exec.Command(tshark, "-r", pcap, "-Y", "_ws.malformed", "-T", "fields", "-e", "frame.number").Output()
				require.NoError(t, err)
				require.Empty(t, strings.TrimSpace(string(malformed)), "malformed frames")

				out, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-E", "separator=,",
					"-e", "vsock.src_cid", "-e", "vsock.virtio.op", "-e", "vsock.virtio.len").Output()
				require.NoError(t, err)
				got := Counters{GuestToHost: map[string]uint64{}, HostToGuest: map[string]uint64{},
					RWBytes: map[string]uint64{"guest_to_host": 0, "host_to_guest": 0}}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if line == "" {
						continue
					}
					f := strings.Split(line, ",")
					require.Len(t, f, 3, line)
					src, _ := strconv.ParseUint(f[0], 10, 64)
					op, _ := strconv.ParseUint(f[1], 10, 16)
					n, _ := strconv.ParseUint(f[2], 10, 32)
					m, key := got.HostToGuest, "host_to_guest"
					if src != virtio.CIDHost {
						m, key = got.GuestToHost, "guest_to_host"
					}
					m[virtio.Op(op).String()]++
					if virtio.Op(op) == virtio.OpRW {
						got.RWBytes[key] += n
					}
				}
				require.Equal(t, sc.Report.Counters, got)
			})
		}
	}
}
