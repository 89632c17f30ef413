package compare

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/trace"
)

var rewrite = flag.Bool("rewrite", false, "write the actual comparisons into testdata/*.txt")

func wedgeTrace(t *testing.T) *trace.File {
	const path = "../../testdata/incidents/stdout-wedge.trace"
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := replay.Parse("stdout-wedge.trace", string(text))
	require.NoError(t, err)
	return f
}

func compare(t *testing.T, scenario string, a, b []string) *Comparison {
	f := wedgeTrace(t)
	sa, err := Settings(a)
	require.NoError(t, err)
	sb, err := Settings(b)
	require.NoError(t, err)
	fa, err := Scenario(f, scenario, "a", sa, replay.Options{})
	require.NoError(t, err)
	fb, err := Scenario(f, scenario, "b", sb, replay.Options{})
	require.NoError(t, err)
	return Run(lab.T(t), fa, fb, sa, sb, replay.Options{})
}

// golden compares got with the file of that name under testdata; -rewrite
// writes it.
func golden(t *testing.T, name, got string) {
	path := "testdata/" + name
	if *rewrite {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "go test ./replay/compare -rewrite to accept")
}

// The seed-000 wedge under Cloud Hypervisor 50 and 51: the timelines part
// at the first 64 KiB packet of init's log stream, which 50 drops and 51
// forwards; the verdicts are wedged and ok.
func TestWedgeCH50AgainstCH51(t *testing.T) {
	c := compare(t, "wedge-ch50-6.12.68-notimeout-64kib",
		[]string{"device=cloud-hypervisor-50"}, []string{"device=cloud-hypervisor-51"})
	require.False(t, c.Same())
	require.Equal(t, "wedged", c.A.Scenario.Report.Verdict)
	require.Equal(t, "ok", c.B.Scenario.Report.Verdict)
	golden(t, "wedge-ch50-vs-ch51.txt", c.Text(4))
}

// Cloud Hypervisor 52 only adds a bounds check for a lone descriptor
// shorter than its header says, which 4 KiB writes never send: the same
// timeline as 51, record for record.
func TestNoDifferenceCH51AgainstCH52(t *testing.T) {
	c := compare(t, "wedge-ch51-6.12.68-timeout-4kib",
		[]string{"device=cloud-hypervisor-51"}, []string{"device=cloud-hypervisor-52"})
	require.True(t, c.Same())
	require.Equal(t, -1, c.Part())
	golden(t, "ch51-vs-ch52-same.txt", c.Text(4))
}

// A setting of another directive: init's write timeout turns the wedge into
// a degraded stream.
func TestInitSetting(t *testing.T) {
	c := compare(t, "wedge-ch50-6.12.68-notimeout-64kib",
		nil, []string{"-init.no-write-timeout", "init.write-timeout=2s"})
	require.False(t, c.Same())
	require.Equal(t, "wedged", c.A.Scenario.Report.Verdict)
	require.Equal(t, "degraded", c.B.Scenario.Report.Verdict)
}

func TestSettingsParse(t *testing.T) {
	tests := []struct {
		in   string
		want Setting
		err  string
	}{
		{in: "device=cloud-hypervisor-51", want: Setting{Cmd: "world", Key: "device", Vals: []string{"cloud-hypervisor-51"}}},
		{in: "init.write-timeout=2s", want: Setting{Cmd: "init", Key: "write-timeout", Vals: []string{"2s"}}},
		{in: "init.keep-reset-sessions", want: Setting{Cmd: "init", Key: "keep-reset-sessions"}},
		{in: "-init.no-write-timeout", want: Setting{Cmd: "init", Key: "no-write-timeout", Remove: true}},
		{in: "device", err: `setting "device": the world directive's arguments take a value`},
		{in: "name=x", err: `setting "name=x": the scenario keeps its name on both sides`},
		{in: "-init.write-timeout=2s", err: `setting "-init.write-timeout=2s": a removal takes no value`},
		{in: "init.write-timeout=", err: `setting "init.write-timeout=": expected a value after '='`},
		{in: "", err: `setting "": expected key=value`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSetting(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.want.text = tc.in
			require.Equal(t, tc.want, got)
		})
	}
}

// Settings that the scenario cannot take are errors naming the side and
// the problem, before anything runs.
func TestScenarioRefusesBadSettings(t *testing.T) {
	f := wedgeTrace(t)
	tests := []struct {
		scenario string
		setting  string
		err      string
	}{
		{"wedge-ch50-6.12.68-notimeout-64kib", "device=qemu-9", `unknown device profile`},
		{"wedge-ch50-6.12.68-notimeout-64kib", "init.write-timeout=2s", "no-write-timeout and write-timeout contradict each other"},
		{"wedge-ch50-6.12.68-notimeout-64kib", "stream.port=9", "scenario wedge-ch50-6.12.68-notimeout-64kib has no stream directive"},
		{"wedge-ch50-6.12.68-notimeout-64kib", "-init.keep-reset-sessions", "init (line 38) has no argument keep-reset-sessions"},
		{"wedge-ch50-6.12.68-notimeout-64kib", "init.bogus", `init: unknown argument "bogus"`},
		{"nonesuch", "device=cloud-hypervisor-51", `no scenario named "nonesuch"`},
		{"", "device=cloud-hypervisor-51", "has 16 scenarios: name one as FILE:SCENARIO"},
	}
	for _, tc := range tests {
		t.Run(tc.setting, func(t *testing.T) {
			s, err := ParseSetting(tc.setting)
			require.NoError(t, err)
			_, err = Scenario(f, tc.scenario, "b", []Setting{s}, replay.Options{})
			require.ErrorContains(t, err, tc.err)
		})
	}
	// The file itself is untouched by a side's settings.
	require.Equal(t, "world", f.Directives[0].Cmd)
	d, _ := f.Directives[0].Arg("device")
	require.Equal(t, []string{"cloud-hypervisor-50"}, d.Vals)
}
