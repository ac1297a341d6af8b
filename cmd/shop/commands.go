package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one subcommand of shop.
type command struct {
	name    string // as typed: "run", "user add"
	args    string // what follows the name, for the usage line
	summary string
	details string // what --help adds to the summary
	// config returns a new configuration of the command, for --help; the
	// command parses its own.
	config func() any
	// flags declares the command's flags, for --help; nil: none.
	flags func(*flag.FlagSet)
	run   func(ctx context.Context, inv invocation) error
}

// commands lists every subcommand, in the order shop help shows them.
func commands() []command {
	return []command{
		{name: "run", summary: "migrate, then the API, the relay and every consumer group in one process: the one-command default",
			details: "SHOP_ENV defaults to dev here (and says so). SIGINT or SIGTERM stops every part, each draining what it has in flight.",
			config:  func() any { return new(runConfig) }, run: runCmd},
		{name: "migrate", summary: "create the database named in DATABASE_URL if it is missing, and apply the migrations",
			details: "Idempotent; several may run at once (they take turns under an advisory lock).",
			config:  func() any { return new(migrateConfig) }, run: migrateCmd},
		{name: "api", summary: "serve the HTTP API on HTTP_ADDR",
			details: "SIGTERM drains the requests in flight and exits 0.",
			config:  func() any { return new(apiConfig) }, run: apiCmd},
		{name: "relay", summary: "forward the outbox to RabbitMQ; any number of replicas may run",
			details: "SIGTERM lets the round in flight finish and exits 0.",
			config:  func() any { return new(relayConfig) }, run: relayCmd},
		{name: "consume", args: "GROUP...", summary: "run consumer groups: " + strings.Join(groupNames(), ", "),
			details: groupsHelp(), config: func() any { return new(consumeConfig) }, run: consumeCmd},
		{name: "user add", args: "--email E [--password-file F | --password P] [--name N] [--admin]", summary: "create a user (how the first admin exists)",
			details: "Without --password-file or --password, the password is the first line of stdin (shop user add --email E <pw.txt); a terminal is refused.\n" +
				"--password works, with a warning: anyone who can list the machine's processes sees it. The audit log records the user added (actor \"cli\").",
			config: func() any { return new(userConfig) }, flags: userFlags(new(userInput)), run: userAddCmd},
		{name: "user revoke", args: "--email E", summary: "end every token issued to that user before now",
			details: "The user's token version goes up: the API refuses the tokens that carry an earlier one. The audit log records it.",
			config:  func() any { return new(userAdminConfig) }, flags: userRevokeFlags(new(string)), run: userRevokeCmd},
		{name: "user role", args: "--email E --role customer|admin", summary: "give a user another role",
			details: "A change ends the user's tokens too (they carry the old role); the user signs in again. The audit log records it.",
			config:  func() any { return new(userAdminConfig) }, flags: userRoleFlags(new(userRoleInput)), run: userRoleCmd},
		{name: "projections rebuild", summary: "rewrite every Redis read model from Postgres; safe while the system runs",
			config: func() any { return new(rebuildConfig) }, run: rebuildCmd},
		{name: "outbox status", summary: "pending outbox rows and the age of the oldest, per partition",
			config: func() any { return new(outboxConfig) }, run: outboxStatusCmd},
		{name: "dead list", args: "GROUP [N]", summary: "show the messages (all, or the first N) in a group's dead queue",
			config: func() any { return new(deadConfig) }, run: deadListCmd},
		{name: "dead replay", args: "GROUP [N]", summary: "move the messages (all, or the first N) of a group's dead queue back to its queue",
			config: func() any { return new(deadConfig) }, run: deadReplayCmd},
		{name: "events", args: "[--markdown]", summary: "list the events of the stream: each routing key, the groups that consume it and what it means",
			details: "From api/asyncapi.yaml, the contract built into the binary. --markdown prints the README's event table.",
			config:  func() any { return new(eventsConfig) }, flags: eventsFlags(new(bool)), run: eventsCmd},
		{name: "loadtest", args: "[--url U] [--rate R | --connections C] [--duration D] [--mix M] [--json] ...",
			summary: "drive a running shop over HTTP with a realistic mix, and report latencies per endpoint and end to end",
			details: "It registers --customers customers (and, with an admin, creates --products products), then sends the mix for --duration:\n" +
				"a line a second on stderr while it runs, a summary at the end. End to end is from an order's 202 to the order seen\n" +
				"decided through GET with min_version. Exits non-zero when any answer was 5xx or an accepted order was not decided\n" +
				"within --settle. It talks to the API only.",
			config: func() any { return new(loadtestConfig) }, flags: loadtestFlags(new(loadtestInput)), run: loadtestCmd},
		{name: "reset", summary: "wipe shop's database, Redis keys and queues, for a fresh start (SHOP_ENV=dev only)",
			details: "make reset stops a shop that make up started, then runs it.",
			config:  func() any { return new(resetConfig) }, run: resetCmd},
	}
}

// lookup finds the command that args start with, and returns the rest.
func lookup(args []string) (command, []string, error) {
	var family []string // commands of two words starting with args[0]
	for _, c := range commands() {
		words := strings.Fields(c.name)
		switch {
		case len(words) == 1 && words[0] == args[0]:
			return c, args[1:], nil
		case len(words) == 2 && words[0] == args[0]:
			if len(args) > 1 && words[1] == args[1] {
				return c, args[2:], nil
			}
			family = append(family, c.name+" "+c.args)
		}
	}
	if len(family) > 0 {
		return command{}, nil, fmt.Errorf("%w: shop %s", errUsage, strings.Join(family, " | shop "))
	}
	return command{}, nil, fmt.Errorf("%w: %w %q", errUsage, errUnknown, args[0])
}

// errUnknown is a command shop does not have.
var errUnknown = errors.New("unknown command")

// printHelp writes the usage of shop: every command, and every variable.
func printHelp(w io.Writer) {
	fmt.Fprintln(w, "usage: shop COMMAND [ARGS]    (shop COMMAND --help: what it does and reads)")
	fmt.Fprintln(w, "\ncommands:")
	var configs []any
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
		configs = append(configs, c.config())
	}
	fmt.Fprintln(w, "\nenvironment (every variable, its default, what it is for):")
	printVariables(w, configs...)
}

// printUsage writes what c does, its flags and the variables it reads.
func (c command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: shop %s\n\n%s", strings.TrimSpace(c.name+" "+c.args), c.summary)
	if c.details != "" {
		fmt.Fprintf(w, ".\n%s", c.details)
	}
	fmt.Fprintln(w)
	if c.flags != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.SetOutput(w)
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	fmt.Fprintln(w, "\nenvironment:")
	printVariables(w, c.config())
}
