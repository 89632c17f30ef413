// Command hosted runs lab bubbles through lab.Hosted outside go test, as a
// libFuzzer binary does, for TestHostedOutsideGoTest. Its arguments are
// runs, in order: "pass" runs sleepAndLog, "fail" a scenario that fails
// its bubble's T. Arguments starting with "-" are a driver's own flags,
// which the testing framework must not see; with HOSTED_PARSE_FLAGS=1 the
// program parses its own flags first, as a program with flags does.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// sleepAndLog is the passing scenario; TestHostedOutsideGoTest runs the
// same one with lab.Run and compares the event logs' hashes.
func sleepAndLog(l *lab.Lab) {
	time.Sleep(1500 * time.Millisecond)
	l.Logf("hosted", "slept until %s", l.Now())
}

func main() {
	if os.Getenv("HOSTED_PARSE_FLAGS") == "1" {
		flag.Bool("max_total_time", false, "a driver flag")
		flag.Parse()
	}
	r := lab.Hosted()
	for i, arg := range os.Args[1:] {
		switch arg {
		case "pass":
			res := r.Run(lab.Config{}, sleepAndLog)
			fmt.Printf("run %d passed: end %s, log %s\n", i, res.End, res.Hash)
		case "fail":
			r.Run(lab.Config{}, func(l *lab.Lab) { l.T().Errorf("deliberate failure at %s", l.Now()) })
			fmt.Printf("run %d passed\n", i)
		default:
			if strings.HasPrefix(arg, "-") {
				continue
			}
			fmt.Fprintf(os.Stderr, "hosted: unknown run %q (pass or fail)\n", arg)
			os.Exit(2)
		}
		// Restored by the time the first run returns.
		fmt.Printf("args: %s\n", strings.Join(os.Args[1:], " "))
	}
}
