// Command shop is the one binary of the shop backend: the HTTP API, the
// outbox relay, the consumer groups, the schema migrations and the
// operator commands, each a subcommand (commands.go lists them). Every
// process is configured by environment variables, declared once in
// config.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage marks a command line shop cannot run: exit code 2.
var errUsage = errors.New("usage")

// run is the whole program: it finds the command args name, and runs it
// with the configuration getenv gives until it ends or ctx is cancelled.
// `-h` or `--help` anywhere prints the command's usage and runs nothing.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stderr)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	if args[0] == "help" || isHelp(args[0]) {
		if len(args) > 1 && !isHelp(args[1]) { // shop help CMD
			return run(ctx, append(args[1:], "--help"), getenv, stdout, stderr)
		}
		printHelp(stdout)
		return nil
	}
	c, rest, err := lookup(args)
	if errors.Is(err, errUnknown) {
		printHelp(stderr)
	}
	if err != nil {
		return err
	}
	if slices.ContainsFunc(rest, isHelp) {
		c.printUsage(stdout)
		return nil
	}
	return c.run(ctx, invocation{args: rest, getenv: getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr})
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

// invocation is what a command runs with.
type invocation struct {
	args           []string
	getenv         func(string) string
	stdin          io.Reader // shop user add reads a password from it
	stdout, stderr io.Writer
}

// load parses the command's configuration into cfg and returns the logger
// it configures.
func (inv invocation) load(cfg any) (*slog.Logger, error) {
	if err := parseConfig(cfg, inv.getenv); err != nil {
		return nil, err
	}
	for _, s := range sections(cfg) {
		if l, ok := s.Interface().(logSection); ok {
			return newLogger(inv.stderr, l), nil
		}
	}
	return newLogger(inv.stderr, logSection{Level: "info", Format: "auto"}), nil
}

// loadAlone is load for a command that takes no arguments.
func (inv invocation) loadAlone(name string, cfg any) (*slog.Logger, error) {
	if len(inv.args) > 0 {
		return nil, fmt.Errorf("%w: shop %s takes no arguments", errUsage, name)
	}
	return inv.load(cfg)
}

// withDefault returns getenv with key set to value when it is unset.
func withDefault(getenv func(string) string, key, value string) func(string) string {
	return func(k string) string {
		if v := getenv(k); k != key || v != "" {
			return v
		}
		return value
	}
}
