package rescue

import (
	"path/filepath"
	"regexp"
)

// ConsoleUI is a console the appliance runs its console UI on: the
// terminal device and the terminal type to draw with.
type ConsoleUI struct {
	TTY, Term string
}

// vtName matches the kernel's virtual terminals (tty0 is "the current
// one", which a program cannot own; tty1 is the first).
var vtName = regexp.MustCompile(`^tty[0-9]+$`)

// DefaultSerialTerm is the terminal type assumed on serial consoles: what
// nearly every terminal emulator and serial console server understands.
// lifeboat.term= names another (xterm-256color for colour).
const DefaultSerialTerm = "vt220"

// ConsoleUIs lists the consoles for the console UI, in the order the
// kernel prefers them: every console of /proc/consoles (else of the
// console= arguments), tty0 taken as tty1, a virtual terminal drawn as
// "linux" and any other (a serial line) as lifeboat.term or
// DefaultSerialTerm. root is "/" on the appliance.
func ConsoleUIs(root string) []ConsoleUI {
	cmdline, _ := readSmall(filepath.Join(root, "proc", "cmdline"), maxCmdline)
	boot, _ := ParseCmdline(string(cmdline))
	var names []string
	if b, err := readSmall(filepath.Join(root, "proc", "consoles"), maxCmdline); err == nil {
		names = ParseConsoles(string(b))
	}
	if len(names) == 0 {
		names = boot.Consoles
	}
	serial := boot.Term
	if serial == "" {
		serial = DefaultSerialTerm
	}
	var out []ConsoleUI
	seen := map[string]bool{}
	for _, n := range names {
		term := serial
		if vtName.MatchString(n) {
			term = "linux"
			if n == "tty0" {
				n = "tty1"
			}
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, ConsoleUI{TTY: filepath.Join(root, "dev", n), Term: term})
	}
	return out
}
