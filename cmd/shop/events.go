package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	contract "github.com/shopdev/shop/api"
)

// eventsConfig is the configuration of shop events: none, as it reads only
// the contract built into the binary.
type eventsConfig struct{}

func eventsFlags(markdown *bool) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.BoolVar(markdown, "markdown", false, "print a Markdown table, as the README's event table holds it")
	}
}

// eventsCmd is shop events: the catalogue of the event stream, from
// api/asyncapi.yaml as built into the binary (package api, imported as
// contract: this package has a type api), so that what it prints and
// what the tests hold every published event to are one document.
func eventsCmd(_ context.Context, inv invocation) error {
	var markdown bool
	if err := parseFlags(inv, "events", eventsFlags(&markdown)); err != nil {
		return err
	}
	events, err := contract.Events()
	if err != nil {
		return err
	}
	if markdown {
		return eventsMarkdown(inv.stdout, events)
	}
	return eventsTable(inv.stdout, events)
}

// eventsTable writes one aligned row per event.
func eventsTable(w io.Writer, events []contract.Event) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTING KEY\tCONSUMED BY\tSUMMARY")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.RoutingKey, strings.Join(e.Groups, ", "), e.Summary)
	}
	return tw.Flush()
}

// eventsMarkdown writes the events as a Markdown table.
func eventsMarkdown(w io.Writer, events []contract.Event) error {
	cell := strings.NewReplacer("|", `\|`, "\n", " ").Replace
	var b strings.Builder
	b.WriteString("| routing key | consumed by | summary |\n|---|---|---|\n")
	for _, e := range events {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", e.RoutingKey, cell(strings.Join(e.Groups, ", ")), cell(e.Summary))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
