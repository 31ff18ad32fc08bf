// Command lifeboat clones, backs up and restores disks. It is the one binary
// of the Lifeboat appliance and also a plain Linux command-line tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns an error to print; its exit status is 1 unless the error
// is an exitError.
type command struct {
	summary string
	run     func(ctx context.Context, env *cmdEnv, args []string) error
}

// cmdEnv is what a subcommand talks to, so tests can run it in-process.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// interactive is true when stdin and stderr are terminals.
	interactive bool
}

var commands = map[string]command{}

// memoryLimit is the Go runtime's soft memory limit for the process.
const memoryLimit = 160 << 20

func register(name string, c command) { commands[name] = c }

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	// Copies run through fixed buffer pools; a soft limit keeps the
	// garbage collector from letting the heap grow to twice the live data,
	// so a rescue machine with little memory is not pushed into swap.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, interactive: isTerminal(os.Stdin) && isTerminal(os.Stderr)}
	os.Exit(run(ctx, env, os.Args[1:]))
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(env.stdout, "lifeboat", version)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "lifeboat: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return 2
	}
	if err := c.run(ctx, env, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the usage asked for is printed
		}
		fmt.Fprintf(env.stderr, "lifeboat %s: %v\n", args[0], err)
		if ee, ok := err.(*exitError); ok {
			return ee.code
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lifeboat COMMAND [OPTIONS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  version    print the version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'lifeboat COMMAND -h' for a command's options.")
}
