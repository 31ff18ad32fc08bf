package rescue

import (
	"fmt"
	"strings"
)

// After actions: what the appliance does once a job ends.
const (
	AfterPoweroff = "poweroff"
	AfterReboot   = "reboot"
	AfterShell    = "shell"
	AfterTUI      = "tui"
)

// Boot is what the kernel command line asks of the appliance.
type Boot struct {
	// Job is the lifeboat command line from lifeboat.run, nil when none.
	Job []string
	// Hostname is lifeboat.hostname, empty when not given.
	Hostname string
	// Term is lifeboat.term: the terminal type of serial consoles for the
	// console UI; empty when not given.
	Term string
	// JobFile is lifeboat.job: a job file as [DEVICE:]PATH (see
	// ParseJobSpec), empty when none.
	JobFile string
	// After is lifeboat.after: poweroff, reboot, shell or tui; when not
	// given, tui without a job and shell after one.
	After string
	// Consoles are the console= devices in order, with options cut
	// ("ttyS0,115200n8" gives "ttyS0").
	Consoles []string
}

// maxCmdline bounds what is parsed: the kernel's own limit on x86 is
// 2048 bytes (COMMAND_LINE_SIZE), and a longer file is not a command line.
const maxCmdline = 64 << 10

// ParseCmdline reads the kernel command line as /proc/cmdline shows it.
// Parameters are separated by spaces; a value may be double-quoted to hold
// spaces (the kernel strips the quotes from the value it passes on, but
// /proc/cmdline shows them). lifeboat.run's words are separated by commas.
func ParseCmdline(s string) (Boot, error) {
	var b Boot
	if len(s) > maxCmdline {
		return b, fmt.Errorf("parse kernel command line: %d bytes, over %d", len(s), maxCmdline)
	}
	for _, p := range splitParams(s) {
		key, val, _ := strings.Cut(p, "=")
		switch key {
		case "lifeboat.run":
			if val == "" {
				return b, fmt.Errorf("parse kernel command line: lifeboat.run is empty")
			}
			words := strings.Split(val, ",")
			for _, w := range words {
				if w == "" {
					return b, fmt.Errorf("parse kernel command line: lifeboat.run=%q has an empty word", val)
				}
			}
			b.Job = words
		case "lifeboat.term":
			if val == "" || len(val) > 64 || strings.ContainsAny(val, "/ ") {
				return b, fmt.Errorf("parse kernel command line: lifeboat.term=%q is not a terminal type", val)
			}
			b.Term = val
		case "lifeboat.hostname":
			if !validHostname(val) {
				return b, fmt.Errorf("parse kernel command line: lifeboat.hostname=%q: want letters, digits and '-', at most 63", val)
			}
			b.Hostname = val
		case "lifeboat.job":
			if _, _, err := ParseJobSpec(val); err != nil {
				return b, fmt.Errorf("parse kernel command line: %w", err)
			}
			b.JobFile = val
		case "lifeboat.after":
			switch val {
			case AfterPoweroff, AfterReboot, AfterShell, AfterTUI:
				b.After = val
			default:
				return b, fmt.Errorf("parse kernel command line: lifeboat.after=%q: want poweroff, reboot, shell or tui", val)
			}
		case "console":
			name, _, _ := strings.Cut(val, ",")
			if name != "" {
				b.Consoles = append(b.Consoles, name)
			}
		}
	}
	if b.Job != nil && b.JobFile != "" {
		return b, fmt.Errorf("parse kernel command line: give lifeboat.run or lifeboat.job, not both")
	}
	if b.After == "" {
		// Without a job the console UI is what people came for; after a
		// job the shell keeps its output on the screen.
		b.After = AfterTUI
		if b.Job != nil || b.JobFile != "" {
			b.After = AfterShell
		}
	}
	return b, nil
}

// splitParams splits a command line at spaces outside double quotes and
// drops the quotes, as the kernel's next_arg does.
func splitParams(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, any := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			any = true
		case !inQuote && (c == ' ' || c == '\t' || c == '\n'):
			if any {
				out = append(out, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteByte(c)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// ParseConsoles reads /proc/consoles ("ttyS0 -W- (EC p a) 4:64") and
// returns the device names of the enabled consoles, the preferred one
// (flag C) first.
func ParseConsoles(s string) []string {
	if len(s) > maxCmdline {
		s = s[:maxCmdline]
	}
	var out []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.ContainsAny(f[0], "/.") {
			continue
		}
		flags := ""
		if i := strings.Index(line, "("); i >= 0 {
			if j := strings.Index(line[i:], ")"); j > 0 {
				flags = line[i+1 : i+j]
			}
		}
		if strings.Contains(flags, "C") {
			out = append([]string{f[0]}, out...)
		} else {
			out = append(out, f[0])
		}
	}
	return out
}

// validHostname accepts one DNS label (RFC 1123): what a snapshot's host
// and a DHCP client may carry.
func validHostname(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
