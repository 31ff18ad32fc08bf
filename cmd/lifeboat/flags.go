package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// newFlags is a command's flag set: errors are returned, not fatal, and
// the usage line names the command.
func newFlags(name string, env *cmdEnv, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: lifeboat "+usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a command's flags, which take no arguments after
// them. -h returns flag.ErrHelp once the usage is printed (run exits 0);
// other mistakes exit with status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}
