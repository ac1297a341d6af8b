package main

import (
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// loadCompose loads docker-compose.yml, and the other files given, as
// docker compose would (its schema checked), in an environment that has
// only the JWT_SECRET compose requires: every ${X:-default} takes its
// default.
func loadCompose(t *testing.T, files ...string) *types.Project {
	t.Helper()
	project, err := composeProject([]string{"JWT_SECRET=" + strings.Repeat("j", 32)}, files...)
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return project
}

func composeProject(env []string, files ...string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(append([]string{"../../docker-compose.yml"}, files...),
		cli.WithName("shop"), cli.WithWorkingDirectory("../.."), cli.WithEnv(env))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// TestComposeRequiresAJWTSecret: docker compose refuses to start without
// a JWT_SECRET of the user's own, saying where to put it; the edge's
// address is trusted to name the clients.
func TestComposeRequiresAJWTSecret(t *testing.T) {
	t.Parallel()
	if _, err := composeProject(nil); err == nil || !strings.Contains(err.Error(), "set JWT_SECRET, at least 32 bytes, in .env") {
		t.Errorf("compose without JWT_SECRET: %v, want an error that says to set it", err)
	}
	project := loadCompose(t)
	if got := project.Services["api"].Environment["JWT_SECRET"]; got == nil || *got != strings.Repeat("j", 32) {
		t.Errorf("the api's JWT_SECRET is %v, want the one given", got)
	}
	if got := project.Services["api"].Environment["TRUSTED_PROXIES"]; got == nil || *got == "" {
		t.Error("the api trusts no proxy: behind nginx every client would share nginx's rate limit")
	}
	example, err := os.ReadFile("../../.env.example")
	testenv.Must(t, err, "read .env.example")
	if !strings.Contains(string(example), "JWT_SECRET=") {
		t.Errorf(".env.example does not show JWT_SECRET:\n%s", example)
	}
}

// knownVariables are every variable some shop command reads.
func knownVariables() map[string]bool {
	known := map[string]bool{}
	for _, c := range commands() {
		for _, s := range sections(c.config()) {
			for _, v := range variables(s.Type()) {
				known[v.name] = true
			}
		}
	}
	return known
}

// TestComposeRunsEveryProcess: docker-compose.yml is valid Compose; it runs
// migrate, the API, the relay and one process for each consumer group of the
// registry, from the image the Dockerfile builds; it gives shop only
// variables shop reads; Postgres, Redis and RabbitMQ publish no port of this
// machine (only the edge and RabbitMQ's UI do), unless deploy/compose/ports.yml
// is added, for a shop run outside Docker.
func TestComposeRunsEveryProcess(t *testing.T) {
	t.Parallel()
	project := loadCompose(t)
	known := knownVariables()
	commands := map[string]int{}
	published := map[string][]string{}
	for name, s := range project.Services {
		for _, p := range s.Ports {
			published[name] = append(published[name], p.HostIP+":"+p.Published)
		}
		if s.Image != "shop:dev" {
			continue
		}
		if s.Build == nil || s.Build.Context == "" {
			t.Errorf("service %s runs shop:dev without building it", name)
		}
		commands[strings.Join(s.Command, " ")]++
		for k := range s.Environment {
			if !known[k] {
				t.Errorf("service %s sets %s, which no shop command reads", name, k)
			}
		}
	}
	want := map[string]int{"migrate": 1, "api": 1, "relay": 1}
	for _, g := range handlers.Names() {
		want["consume "+g] = 1
	}
	if !maps.Equal(commands, want) {
		t.Errorf("shop services run %v, want %v", commands, want)
	}
	if want := map[string][]string{"nginx": {":8080"}, "rabbitmq": {"127.0.0.1:15672"}}; !maps.EqualFunc(published, want, slices.Equal) {
		t.Errorf("published ports %v, want %v", published, want)
	}

	withPorts := loadCompose(t, "../../deploy/compose/ports.yml")
	for name, want := range map[string]string{"postgres": "5432", "redis": "6379", "rabbitmq": "5672"} {
		if !slices.ContainsFunc(withPorts.Services[name].Ports, func(p types.ServicePortConfig) bool {
			return p.HostIP == "127.0.0.1" && p.Published == want
		}) {
			t.Errorf("with ports.yml, %s does not publish 127.0.0.1:%s: %+v", name, want, withPorts.Services[name].Ports)
		}
	}
}
