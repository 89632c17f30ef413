package programs

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
)

// Setup fixes the world and program options of a system check; the fuzz
// targets take theirs from the environment (VSOCKLAB_PROFILE=historical), so
// that the same target hunts with the fixed programs and rediscovers the
// incidents with the old ones.
type Setup struct {
	Name   string
	Device string
	Kernel string
	Init   guestinit.Options
	Hostd  hostd.Options
}

// The system targets' setups.
var (
	// CurrentWedge: a fixed device and init with its write timeout.
	CurrentWedge = Setup{Name: "current", Device: "cloud-hypervisor-51", Kernel: "linux-6.12.68"}
	// HistoricalWedge: seed 000's device, kernel and init.
	HistoricalWedge = Setup{Name: "historical", Device: "cloud-hypervisor-50", Kernel: "linux-6.12.68",
		Init: guestinit.Options{NoVsockWriteTimeout: true}}
	// CurrentResume: fixed-start ports still, but an init that closes reset
	// sockets.
	CurrentResume = Setup{Name: "current", Device: "firecracker-1.14", Kernel: "linux-6.12.68",
		Hostd: hostd.Options{SessionFirst: true}}
	// HistoricalResume: seed 003's init, ports and hostd order.
	HistoricalResume = Setup{Name: "historical", Device: "firecracker-1.14", Kernel: "linux-6.12.68",
		Init: guestinit.Options{KeepResetSessions: true}, Hostd: hostd.Options{SessionFirst: true}}
)

// SetupFromEnv picks the historical setup when VSOCKLAB_PROFILE says so.
func SetupFromEnv(current, historical Setup) Setup {
	if os.Getenv("VSOCKLAB_PROFILE") == "historical" {
		return historical
	}
	return current
}

func (p Setup) lab() lab.Config {
	return lab.Config{Config: emu.Config{Device: p.Device, Kernel: p.Kernel, Seed: 1}, MaxTime: 2 * time.Hour}
}

// MaxStdoutBlock is the system oracle's bound on how long one stdout write
// of the workload may wait for room in the pipe.
const MaxStdoutBlock = 5 * time.Second

// DecodeWrites turns fuzz input into a workload write sequence: each 4
// bytes give a size of 1 byte to 128 KiB and a delay of 0 to 63 ms before
// the write. At most 64 writes.
func DecodeWrites(data []byte) []labenv.Write {
	var ws []labenv.Write
	for len(data) >= 4 && len(ws) < 64 {
		size := 1 + (int(data[0])|int(data[1])<<8|int(data[2]&1)<<16)%(128<<10)
		ws = append(ws, labenv.Write{Size: size, Delay: time.Duration(data[3]&63) * time.Millisecond})
		data = data[4:]
	}
	return ws
}

func writesArg(ws []labenv.Write) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%d@%s", w.Size, w.Delay)
	}
	return "writes=" + strings.Join(parts, ",")
}

// CheckSystem boots init with a workload that writes stdout as data says,
// and hostd, and checks the stdout oracles: no write of the workload waits
// longer than MaxStdoutBlock, and every byte is accounted for: delivered to
// hostd in order, or reported dropped (by init with a warning, by the
// device with its error line).
func CheckSystem(r lab.Runner, p Setup, data []byte) error {
	ws := DecodeWrites(data)
	if len(ws) == 0 {
		return nil
	}
	var total int64
	var span time.Duration
	for _, w := range ws {
		total += int64(w.Size)
		span += w.Delay
	}
	var failure error
	r.Run(p.lab(), func(l *lab.Lab) {
		s := Start(l, p.Init, []string{"writer", writesArg(ws)}, p.Hostd)
		if _, err := s.WaitCycle(0, time.Minute); err != nil {
			failure = fmt.Errorf("boot never started: %v", err)
			return
		}
		time.Sleep(span + 30*time.Second)
		failure = checkStdout(s, total)
	})
	return failure
}

func checkStdout(s *System, total int64) error {
	out := s.Stdout()
	if out.LongestBlock > MaxStdoutBlock {
		return fmt.Errorf("the workload waited %s to write stdout (bound %s); it wrote %d of %d bytes",
			out.LongestBlock, MaxStdoutBlock, out.Written, total)
	}
	if out.Written != total {
		return fmt.Errorf("the workload wrote %d of %d bytes", out.Written, total)
	}
	if got := out.Delivered + out.DroppedByInit + out.DroppedByDevice; got != out.Written {
		return fmt.Errorf("bytes unaccounted for: written %d, delivered %d, dropped by init %d, dropped by the device %d",
			out.Written, out.Delivered, out.DroppedByInit, out.DroppedByDevice)
	}
	if out.DroppedByInit == 0 && out.DroppedByDevice == 0 && out.OutOfOrderAt >= 0 {
		return fmt.Errorf("stdout delivered out of order or duplicated at byte %d of %d", out.OutOfOrderAt, out.Delivered)
	}
	return nil
}

// CheckSuspendResume runs a sequence of operations chosen by data against
// init and hostd: suspend/resume cycles, host connections to the init API
// held open or closed, pauses. Oracles: after every resume whose start
// sequence finished, no socket a reset left behind stays in the guest's
// connected table; every resume starts within 5 s.
func CheckSuspendResume(r lab.Runner, p Setup, data []byte) error {
	if len(data) > 64 {
		data = data[:64]
	}
	var failure error
	r.Run(p.lab(), func(l *lab.Lab) {
		s := Start(l, p.Init, []string{"idle"}, p.Hostd)
		if _, err := s.WaitCycle(0, 10*time.Minute); err != nil {
			failure = fmt.Errorf("boot never started: %v", err)
			return
		}
		api := s.Hostd.Options().APIPort
		var held []*hostd.HybridConn
		cycle := 0
		dial := func(context.Context) (net.Conn, error) { return l.Host.Dial(l.Host.UDSPath()) }
		for _, b := range data {
			switch b % 4 {
			case 0:
				time.Sleep(time.Duration(b>>2) * 100 * time.Millisecond)
				cycle++
				c, err := s.SuspendResume(cycle, time.Second, 10*time.Minute)
				if err != nil {
					failure = fmt.Errorf("resume %d: %v", cycle, err)
					return
				}
				if !c.Started || c.TimeToStarted > 5*time.Second {
					failure = fmt.Errorf("resume %d: started %v after %s (bound 5s); failed attempts %d", cycle, c.Started, c.TimeToStarted, len(c.Attempts))
					return
				}
				var leaked int
				_ = l.Do(func(w *emu.World) error { leaked = w.Guest.Leaked(); return nil })
				if leaked > 0 {
					failure = fmt.Errorf("resume %d: %d sockets reset by the transport are still in the guest's connected table", cycle, leaked)
					return
				}
			case 1:
				ctx, cancel := context.WithTimeout(l.Context(), 5*time.Second)
				c, err := hostd.Connect(ctx, dial, api)
				cancel()
				if err == nil {
					held = append(held, c)
				}
			case 2:
				if len(held) > 0 {
					held[0].Close()
					held = held[1:]
				}
			case 3:
				time.Sleep(time.Duration(b>>2) * 50 * time.Millisecond)
			}
		}
		for _, c := range held {
			c.Close()
		}
	})
	return failure
}
