package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses of the operator subcommands (bridge dlq, bridge offsets).
const (
	ExitOK    = 0 // done
	ExitFail  = 1 // something failed or was refused
	ExitUsage = 2 // a bad flag or argument
)

// Subcommand is an operator subcommand's flag set and the way it reports
// errors: usage errors print the usage and exit 2, failures exit 1.
type Subcommand struct {
	// Flags is the subcommand's flag set; it writes to the subcommand's
	// stderr.
	Flags  *flag.FlagSet
	prog   string
	stderr io.Writer
}

// NewSubcommand starts the flag set of prog ("bridge dlq list"), whose
// usage line is prog followed by synopsis.
func NewSubcommand(prog, synopsis string, stderr io.Writer) *Subcommand {
	s := &Subcommand{Flags: flag.NewFlagSet(prog, flag.ContinueOnError), prog: prog, stderr: stderr}
	s.Flags.SetOutput(stderr)
	s.Flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s %s\n\nFlags:\n", prog, synopsis)
		s.Flags.PrintDefaults()
	}
	return s
}

// Parse parses args. ok is false when the subcommand must return code: -h
// (ExitOK), or a bad flag or argument (ExitUsage, usage printed).
func (s *Subcommand) Parse(args []string) (code int, ok bool) {
	err := s.Flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK, false
	case err != nil: // the flag package printed the error and the usage
		return ExitUsage, false
	case s.Flags.NArg() > 0:
		return s.UsageError("unexpected argument %q", s.Flags.Arg(0)), false
	}
	return ExitOK, true
}

// UsageError prints a flag error and the usage and returns ExitUsage.
func (s *Subcommand) UsageError(format string, args ...any) int {
	fmt.Fprintf(s.stderr, "%s: %s\n", s.prog, fmt.Sprintf(format, args...))
	s.Flags.Usage()
	return ExitUsage
}

// Fail prints a runtime error and returns ExitFail.
func (s *Subcommand) Fail(err error) int {
	fmt.Fprintf(s.stderr, "%s: %v\n", s.prog, err)
	return ExitFail
}

// Set returns the names of the flags given on the command line.
func (s *Subcommand) Set() map[string]bool {
	m := map[string]bool{}
	s.Flags.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}
