package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// What deploy/observability holds, as these tests find it.
const (
	observabilityDir = "../../deploy/observability"
	alertsFile       = observabilityDir + "/prometheus/alerts.yml"
	prometheusFile   = observabilityDir + "/prometheus/prometheus.yml"
	dashboardsDir    = observabilityDir + "/grafana/dashboards"
	datasourcesFile  = observabilityDir + "/grafana/provisioning/datasources/prometheus.yml"
	providersFile    = observabilityDir + "/grafana/provisioning/dashboards/shop.yml"
	observeProfile   = "observability"
)

// promQL parses PromQL as the Prometheus of the observability profile does.
var promQL = parser.NewParser(parser.Options{})

// prometheusOwnMetrics are series Prometheus makes itself for every target
// (and for alerts): the rules and the dashboard may name them, no shop
// process exports them.
var prometheusOwnMetrics = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
	"ALERTS": true, "ALERTS_FOR_STATE": true,
}

// alertRules parses and validates alerts.yml with Prometheus's own rule
// loader (which also parses every expression and annotation template).
func alertRules(t testing.TB) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("alerts.yml does not load in Prometheus: %v", errors.Join(errs...))
	}
	return groups
}

// The Grafana dashboard, as far as these tests read it.
type (
	grafanaDashboard struct {
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
	}
	grafanaPanel struct {
		ID         int                `json:"id"`
		Type       string             `json:"type"`
		Title      string             `json:"title"`
		Datasource *grafanaDatasource `json:"datasource"`
		Targets    []grafanaTarget    `json:"targets"`
		Panels     []grafanaPanel     `json:"panels"` // a row's, when it is collapsed
		GridPos    struct {
			X int `json:"x"`
			Y int `json:"y"`
			W int `json:"w"`
			H int `json:"h"`
		} `json:"gridPos"`
	}
	grafanaTarget struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	}
	grafanaDatasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
)

// dashboards decodes every dashboard that Grafana's provisioning loads, by
// file name.
func dashboards(t testing.TB) map[string]grafanaDashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	testenv.Must(t, err, "list dashboards")
	if len(files) == 0 {
		t.Fatalf("no dashboard in %s", dashboardsDir)
	}
	out := map[string]grafanaDashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		testenv.Must(t, err, "read "+f)
		var d grafanaDashboard
		testenv.Must(t, json.Unmarshal(raw, &d), "decode "+f)
		out[filepath.Base(f)] = d
	}
	return out
}

// panels flattens a dashboard's panels, those of collapsed rows included.
func panels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, panels(p.Panels)...)
	}
	return out
}

// grafanaVariable is a dashboard or built-in variable: $__rate_interval,
// ${job}, $group.
var grafanaVariable = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)

// grafanaQuery is a target's expr as Prometheus receives it, every
// variable being a duration there (the dashboards use none elsewhere).
func grafanaQuery(expr string) string { return grafanaVariable.ReplaceAllString(expr, "5m") }

// metricNames returns the metric name of every vector selector of expr
// (histogram suffixes such as _bucket kept as written). A selector without
// a fixed name (a regex on __name__) fails t: nothing could check it.
func metricNames(t testing.TB, where, expr string) ([]string, error) {
	t.Helper()
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: %q does not parse: %w", where, expr, err)
	}
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				names = append(names, m.Value)
				return nil
			}
		}
		t.Errorf("%s: selector %s names no metric", where, vs)
		return nil
	})
	return names, nil
}

// observedMetrics returns, sorted and once each, every metric name that
// the alert rules and the provisioned dashboards select, as written
// (shop_consumer_event_age_seconds_bucket, not the family). Some are made
// by Prometheus itself, not by shop (prometheusOwnMetrics: up); every
// other one must be exported by a shop process, or its panel stays empty
// and its alert never fires.
func observedMetrics(t testing.TB) []string {
	t.Helper()
	seen := map[string]bool{}
	add := func(where, expr string) {
		names, err := metricNames(t, where, expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			seen[n] = true
		}
	}
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			add("alerts.yml: "+r.Alert+r.Record, r.Expr)
		}
	}
	for file, d := range dashboards(t) {
		for _, p := range panels(d.Panels) {
			for _, target := range p.Targets {
				add(fmt.Sprintf("%s: panel %q", file, p.Title), grafanaQuery(target.Expr))
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// TestObservabilityAlertRules: alerts.yml loads in Prometheus; it has the
// alerts operators rely on, each on the metric that shows the trouble,
// with a severity, a summary and a description.
func TestObservabilityAlertRules(t *testing.T) {
	t.Parallel()
	rules := map[string]rulefmt.Rule{}
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue // a recording rule
			}
			if _, dup := rules[r.Alert]; dup {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			rules[r.Alert] = r
		}
	}
	for name, r := range rules {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := metricNames(t, name, r.Expr); err != nil {
				t.Error(err)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("severity %q, want critical or warning", s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
		})
	}
	for _, tc := range []struct {
		alert, metric string
		for_          time.Duration
	}{
		{"ShopTargetDown", "up", 0},
		{"ShopOutboxBacklogOld", "shop_outbox_oldest_age_seconds", 5 * time.Minute},
		{"ShopConsumerLagHigh", "shop_consumer_event_age_seconds_bucket", 10 * time.Minute},
		{"ShopDeadMessages", "shop_consumer_dead_messages", 0},
		{"ShopAPIErrorRatioHigh", "shop_http_requests_total", 5 * time.Minute},
	} {
		r, ok := rules[tc.alert]
		if !ok {
			t.Errorf("alerts.yml has no alert %s (on %s)", tc.alert, tc.metric)
			continue
		}
		names, err := metricNames(t, tc.alert, r.Expr)
		if err != nil {
			t.Error(err)
		} else if !slices.Contains(names, tc.metric) {
			t.Errorf("alert %s selects %v, want %s among them", tc.alert, names, tc.metric)
		}
		if tc.for_ > 0 && time.Duration(r.For) != tc.for_ {
			t.Errorf("alert %s fires after %s, want %s", tc.alert, time.Duration(r.For), tc.for_)
		}
	}
}

// grafanaDatasources are the datasources Grafana's provisioning creates.
type grafanaDatasources struct {
	Datasources []struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
		UID  string `yaml:"uid"`
		URL  string `yaml:"url"`
	} `yaml:"datasources"`
}

// TestObservabilityDashboard: every provisioned dashboard decodes; every
// panel asks the provisioned Prometheus datasource, by uid, queries that
// parse; and together they show what the issue asked for.
func TestObservabilityDashboard(t *testing.T) {
	t.Parallel()
	var ds grafanaDatasources
	readYAML(t, datasourcesFile, &ds)
	provisioned := map[string]string{} // uid: type
	for _, d := range ds.Datasources {
		provisioned[d.UID] = d.Type
	}
	if provisioned["prometheus"] != "prometheus" {
		t.Fatalf("the provisioned datasources %v have no Prometheus of uid prometheus", provisioned)
	}
	checkDatasource := func(where string, ref *grafanaDatasource) {
		t.Helper()
		switch {
		case ref == nil:
			t.Errorf("%s: no datasource: Grafana would use its default, whatever it is", where)
		case provisioned[ref.UID] == "":
			t.Errorf("%s: datasource uid %q is not provisioned (%v)", where, ref.UID, slices.Sorted(maps.Keys(provisioned)))
		case ref.Type != "" && ref.Type != provisioned[ref.UID]:
			t.Errorf("%s: datasource type %q, but uid %s is a %s", where, ref.Type, ref.UID, provisioned[ref.UID])
		}
	}
	named := map[string]bool{}
	for file, d := range dashboards(t) {
		t.Run(file, func(t *testing.T) {
			if d.UID == "" || d.Title == "" {
				t.Errorf("uid %q, title %q: Grafana needs both", d.UID, d.Title)
			}
			if d.SchemaVersion < 39 { // Grafana 11 and later
				t.Errorf("schemaVersion %d, want one of a current Grafana (39 or later)", d.SchemaVersion)
			}
			ids := map[int]bool{}
			for _, p := range panels(d.Panels) {
				where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
				if ids[p.ID] {
					t.Errorf("%s: id %d is used twice", where, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("%s: gridPos %+v is not within Grafana's 24 columns", where, p.GridPos)
				}
				if p.Type == "row" {
					continue
				}
				checkDatasource(where, p.Datasource)
				if len(p.Targets) == 0 {
					t.Errorf("%s: no query", where)
				}
				for _, target := range p.Targets {
					if target.Datasource != nil {
						checkDatasource(where+" "+target.RefID, target.Datasource)
					}
					names, err := metricNames(t, where, grafanaQuery(target.Expr))
					if err != nil {
						t.Error(err)
					}
					for _, n := range names {
						named[n] = true
					}
				}
			}
		})
	}
	// What the dashboard must show, by the metric that shows it.
	for _, m := range []string{
		"shop_http_requests_total", "shop_http_request_duration_seconds_bucket", // requests, latency, 5xx
		"shop_outbox_pending", "shop_outbox_oldest_age_seconds", "shop_relay_published_total",
		"shop_consumer_messages_total", "shop_consumer_queue_messages", "shop_consumer_event_age_seconds_bucket",
		"shop_consumer_dead_messages",
		"shop_db_pool_acquired_conns", "shop_db_pool_max_conns", "shop_db_pool_empty_acquires_total",
		"shop_redis_pool_timeouts_total",
	} {
		if !named[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// loadComposeProfiles loads docker-compose.yml as `docker compose
// --profile P up` would, in an environment of env and the JWT_SECRET
// compose requires (every other ${X:-default} takes its default).
func loadComposeProfiles(t testing.TB, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	vars := []string{"JWT_SECRET=" + strings.Repeat("j", 32)}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"},
		cli.WithName("shop"), cli.WithWorkingDirectory("../.."), cli.WithEnv(vars), cli.WithProfiles(profiles))
	testenv.Must(t, err, "compose options")
	project, err := opts.LoadProject(context.Background())
	testenv.Must(t, err, "load docker-compose.yml")
	return project
}

// hostPath returns the file of this machine that a service's container sees
// at containerPath, through its bind mounts.
func hostPath(s types.ServiceConfig, containerPath string) (string, bool) {
	best, found := "", false
	bestLen := -1
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		rest, ok := strings.CutPrefix(containerPath, strings.TrimSuffix(v.Target, "/"))
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) || len(v.Target) <= bestLen {
			continue
		}
		best, found, bestLen = filepath.Join(v.Source, filepath.FromSlash(rest)), true, len(v.Target)
	}
	return best, found
}

// sameFile reports whether a and b are the same file of this machine.
func sameFile(t testing.TB, a, b string) bool {
	t.Helper()
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(ia, ib)
}

// prometheusConfig is prometheus.yml as far as these tests read it; an
// unknown key is an error, as it is to Prometheus.
type prometheusConfig struct {
	Global        map[string]any `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName      string `yaml:"job_name"`
		MetricsPath  string `yaml:"metrics_path"`
		DNSSDConfigs []struct {
			Names           []string `yaml:"names"`
			Type            string   `yaml:"type"`
			Port            int      `yaml:"port"`
			RefreshInterval string   `yaml:"refresh_interval"`
		} `yaml:"dns_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `yaml:"source_labels"`
			TargetLabel  string   `yaml:"target_label"`
			Regex        string   `yaml:"regex"`
			Replacement  string   `yaml:"replacement"`
			Action       string   `yaml:"action"`
		} `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

// scrapeJob is the job of prometheus.yml (and of the Kubernetes
// PodMonitors) that scrapes a shop service running command.
func scrapeJob(command []string) string {
	if command[0] == "consume" {
		return "consumer"
	}
	return command[0]
}

// observabilityServices are what the observability profile adds to Compose.
var observabilityServices = []string{"prometheus", "grafana", "jaeger"}

// TestObservabilityComposeProfile: `docker compose --profile observability
// up` adds Prometheus, Grafana and Jaeger, and only it does; every file
// they are given is in deploy/observability, read-only; each one's UI is
// published on loopback only.
func TestObservabilityComposeProfile(t *testing.T) {
	t.Parallel()
	tools := observabilityServices
	plain := loadComposeProfiles(t, nil)
	project := loadComposeProfiles(t, nil, observeProfile)
	for _, name := range tools {
		if _, ok := plain.Services[name]; ok {
			t.Errorf("%s runs without the %s profile", name, observeProfile)
		}
		if s, ok := project.Services[name]; !ok {
			t.Errorf("%s does not run with --profile %s", name, observeProfile)
		} else if !slices.Equal(s.Profiles, []string{observeProfile}) {
			t.Errorf("%s has profiles %v, want only %s", name, s.Profiles, observeProfile)
		}
	}
	for name, s := range project.Services {
		if slices.Contains(s.Profiles, observeProfile) && !slices.Contains(tools, name) {
			t.Errorf("%s runs only with the %s profile: the system must run without it", name, observeProfile)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every file mounted into the three is in deploy/observability.
	repoDir, err := filepath.Abs(observabilityDir)
	testenv.Must(t, err, "abs")
	for _, name := range tools {
		for _, v := range project.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			abs, err := filepath.Abs(v.Source)
			testenv.Must(t, err, "abs")
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
			if !strings.HasPrefix(abs, repoDir+string(filepath.Separator)) {
				t.Errorf("%s mounts %s, outside deploy/observability", name, v.Source)
			}
			if !v.ReadOnly {
				t.Errorf("%s mounts %s writable: it only reads it", name, v.Source)
			}
		}
	}
	// Each one's UI is published on loopback only.
	for name, port := range map[string]string{"prometheus": "9090", "grafana": "3000", "jaeger": "16686"} {
		s := project.Services[name]
		if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool {
			return p.HostIP == "127.0.0.1" && fmt.Sprint(p.Target) == port
		}) {
			t.Errorf("%s does not publish its UI (%s) on 127.0.0.1: %+v", name, port, s.Ports)
		}
	}
}

// TestObservabilityComposeScrapesEveryProcess: the Prometheus of the
// observability profile reads prometheus.yml and alerts.yml beside it, and
// scrapes every long-running shop service, each replica, by its Compose
// name, on the port it serves /metrics, under the job alerts.yml and the
// dashboard expect.
func TestObservabilityComposeScrapesEveryProcess(t *testing.T) {
	t.Parallel()
	project := loadComposeProfiles(t, nil, observeProfile)
	prom := project.Services["prometheus"]
	configPath := "/etc/prometheus/prometheus.yml" // the image's default
	for _, arg := range prom.Command {
		if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
			configPath = v
		}
	}
	if host, ok := hostPath(prom, configPath); !ok || !sameFile(t, host, prometheusFile) {
		t.Errorf("prometheus reads %s, which is not deploy/observability/prometheus/prometheus.yml (%q)", configPath, host)
	}
	var cfg prometheusConfig
	raw, err := os.ReadFile(prometheusFile)
	testenv.Must(t, err, "read prometheus.yml")
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	testenv.Must(t, dec.Decode(&cfg), "parse prometheus.yml")
	if len(cfg.RuleFiles) == 0 {
		t.Error("prometheus.yml loads no rule file")
	}
	for _, f := range cfg.RuleFiles {
		inContainer := f
		if !path.IsAbs(f) {
			inContainer = path.Join(path.Dir(configPath), f)
		}
		if host, ok := hostPath(prom, inContainer); !ok || !sameFile(t, host, alertsFile) {
			t.Errorf("prometheus.yml loads %s (%s in the container), which is not alerts.yml (%q)", f, inContainer, host)
		}
	}

	// Every long-running shop service is scraped by its job, on the port of
	// its METRICS_ADDR, by its Compose name (Docker's DNS answers one A
	// record per replica).
	scraped := map[string]string{} // service: job
	for _, sc := range cfg.ScrapeConfigs {
		if len(sc.DNSSDConfigs) == 0 {
			t.Errorf("job %s: no dns_sd_configs: replicas would not be found", sc.JobName)
		}
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, sd := range sc.DNSSDConfigs {
			if sd.Type != "A" {
				t.Errorf("job %s: dns_sd type %q, want A (Docker's DNS has no SRV records)", sc.JobName, sd.Type)
			}
			for _, name := range sd.Names {
				s, ok := project.Services[name]
				if !ok {
					t.Errorf("job %s scrapes %s, which is no Compose service", sc.JobName, name)
					continue
				}
				scraped[name] = sc.JobName
				addr := s.Environment["METRICS_ADDR"]
				if addr == nil {
					t.Errorf("job %s scrapes %s, which sets no METRICS_ADDR", sc.JobName, name)
					continue
				}
				if _, port, err := net.SplitHostPort(*addr); err != nil || port != fmt.Sprint(sd.Port) {
					t.Errorf("job %s scrapes %s on port %d, but its METRICS_ADDR is %q", sc.JobName, name, sd.Port, *addr)
				}
			}
		}
	}
	for name, s := range project.Services {
		if s.Image != "shop:dev" || s.Command[0] == "migrate" {
			continue
		}
		if want := scrapeJob(s.Command); scraped[name] != want {
			t.Errorf("service %s (shop %s) is scraped by job %q, want %q", name, strings.Join(s.Command, " "), scraped[name], want)
		}
	}
}

// TestObservabilityComposeTracesAndQueues: every shop process sends its
// traces to Jaeger's OTLP/HTTP receiver, unless OTEL_EXPORTER_OTLP_ENDPOINT
// is set empty (in .env); every consumer reads its queues' depths from
// RabbitMQ's management API.
func TestObservabilityComposeTracesAndQueues(t *testing.T) {
	t.Parallel()
	project := loadComposeProfiles(t, nil, observeProfile)
	jaeger := project.Services["jaeger"]
	if v := jaeger.Environment["COLLECTOR_OTLP_ENABLED"]; v == nil || *v != "true" {
		t.Error("jaeger does not enable its OTLP receiver (COLLECTOR_OTLP_ENABLED=true)")
	}
	off := loadComposeProfiles(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, observeProfile)
	for name, s := range project.Services {
		if s.Image != "shop:dev" {
			continue
		}
		endpoint := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
		if endpoint == nil {
			t.Errorf("service %s sends no traces: OTEL_EXPORTER_OTLP_ENDPOINT unset", name)
		} else if u, err := url.Parse(*endpoint); err != nil || u.Scheme != "http" || u.Hostname() != "jaeger" || u.Port() != "4318" {
			t.Errorf("service %s sends traces to %q, want Jaeger's OTLP/HTTP receiver http://jaeger:4318", name, *endpoint)
		}
		if v := off.Services[name].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; v != nil && *v != "" {
			t.Errorf("with OTEL_EXPORTER_OTLP_ENDPOINT= in .env, service %s still sends traces to %q", name, *v)
		}
		if s.Command[0] != "consume" {
			continue
		}
		mgmt := s.Environment["RABBITMQ_MANAGEMENT_URL"]
		if mgmt == nil {
			t.Errorf("consumer service %s has no RABBITMQ_MANAGEMENT_URL: its queue depths go unreported", name)
			continue
		}
		u, err := url.Parse(*mgmt)
		if err != nil || u.Port() != "15672" || !strings.Contains(project.Services[u.Hostname()].Image, "management") {
			t.Errorf("consumer service %s reads queue depths from %q, want the management API (15672) of the RabbitMQ service", name, *mgmt)
		}
	}
}

// TestObservabilityComposeGrafana: Grafana's provisioning reads the
// datasource and the dashboards of deploy/observability, and the
// datasource is the profile's Prometheus.
func TestObservabilityComposeGrafana(t *testing.T) {
	t.Parallel()
	project := loadComposeProfiles(t, nil, observeProfile)
	prom, grafana := project.Services["prometheus"], project.Services["grafana"]
	for container, host := range map[string]string{
		"/etc/grafana/provisioning/datasources/prometheus.yml": datasourcesFile,
		"/etc/grafana/provisioning/dashboards/shop.yml":        providersFile,
	} {
		if got, ok := hostPath(grafana, container); !ok || !sameFile(t, got, host) {
			t.Errorf("grafana reads %s, which is not %s (%q)", container, host, got)
		}
	}
	var providers struct {
		Providers []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, providersFile, &providers)
	if len(providers.Providers) == 0 {
		t.Error("the dashboards provisioning has no provider")
	}
	for _, p := range providers.Providers {
		for file := range dashboards(t) {
			if got, ok := hostPath(grafana, path.Join(p.Options.Path, file)); !ok || !sameFile(t, got, filepath.Join(dashboardsDir, file)) {
				t.Errorf("dashboard provider %s loads %s, where grafana does not see %s", p.Name, p.Options.Path, file)
			}
		}
	}
	if home := grafana.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != nil {
		if got, ok := hostPath(grafana, *home); !ok {
			t.Errorf("grafana's home dashboard %s is not mounted", *home)
		} else if _, err := os.Stat(got); err != nil {
			t.Errorf("grafana's home dashboard: %v", err)
		}
	}
	var ds grafanaDatasources
	readYAML(t, datasourcesFile, &ds)
	for _, d := range ds.Datasources {
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Errorf("datasource %s: url %q: %v", d.Name, d.URL, err)
			continue
		}
		s, ok := project.Services[u.Hostname()]
		if !ok || s.Image != prom.Image {
			t.Errorf("datasource %s asks %s, which is not the prometheus service", d.Name, d.URL)
		} else if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return fmt.Sprint(p.Target) == u.Port() }) {
			t.Errorf("datasource %s asks port %s, which prometheus does not serve (%+v)", d.Name, u.Port(), s.Ports)
		}
	}
}

// Kubernetes objects, as far as these tests read them: Deployments,
// PodMonitors, ConfigMaps, Secrets, Services.
type (
	k8sObject struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name        string            `yaml:"name"`
			Namespace   string            `yaml:"namespace"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			Template struct {
				Metadata struct {
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
			Selector            labelSelector `yaml:"selector"`
			PodMetricsEndpoints []struct {
				Port        string `yaml:"port"`
				Path        string `yaml:"path"`
				Relabelings []struct {
					SourceLabels []string `yaml:"sourceLabels"`
					TargetLabel  string   `yaml:"targetLabel"`
					Replacement  *string  `yaml:"replacement"`
					Action       string   `yaml:"action"`
				} `yaml:"relabelings"`
			} `yaml:"podMetricsEndpoints"`
			NamespaceSelector *struct {
				Any        bool     `yaml:"any"`
				MatchNames []string `yaml:"matchNames"`
			} `yaml:"namespaceSelector"`
			Ports []struct {
				Name string `yaml:"name"`
				Port int    `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	labelSelector = testenv.LabelSelector
)

// selects reports whether a label selector selects a pod of these labels;
// an empty selector selects nothing (a PodMonitor of everything is a
// mistake), and an operator Kubernetes does not know fails t.
func selects(t testing.TB, s labelSelector, pod map[string]string) bool {
	t.Helper()
	ok, err := s.Selects(pod)
	if err != nil {
		t.Error(err)
	}
	return ok
}

// decodeObjects decodes a YAML stream of Kubernetes objects.
func decodeObjects(t testing.TB, what string, raw []byte) []k8sObject {
	t.Helper()
	var out []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("parse %s: %v", what, err)
		}
		if o.Kind != "" {
			out = append(out, o)
		}
	}
}

// shopCommand is the shop command of a Deployment's first container that
// runs one (api, relay, consume GROUP...), and that container.
func shopCommand(d k8sObject) ([]string, container, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		if len(c.Args) > 0 && slices.Contains([]string{"api", "relay", "consume"}, c.Args[0]) {
			return c.Args, c, true
		}
	}
	return nil, container{}, false
}

// hasPort reports whether container c declares a port of that name and
// number.
func hasPort(c container, name, number string) bool {
	for _, p := range c.Ports {
		if p.Name == name && fmt.Sprint(p.ContainerPort) == number {
			return true
		}
	}
	return false
}

// metricsPort is the port of METRICS_ADDR in the base's ConfigMap.
func metricsPort(t *testing.T) string {
	t.Helper()
	var base kustomization
	readYAML(t, filepath.Join(deployDir, "base", "kustomization.yaml"), &base)
	for _, g := range base.ConfigMapGenerator {
		for _, l := range g.Literals {
			if v, ok := strings.CutPrefix(l, "METRICS_ADDR="); ok {
				_, port, err := net.SplitHostPort(v)
				testenv.Must(t, err, "METRICS_ADDR "+v)
				return port
			}
		}
	}
	t.Fatal("the base's ConfigMap sets no METRICS_ADDR")
	return ""
}

// TestObservabilityKubernetesAnnotations: every Deployment of the base
// asks annotation-based scrapers for /metrics on the port of METRICS_ADDR,
// which its shop container declares.
func TestObservabilityKubernetesAnnotations(t *testing.T) {
	t.Parallel()
	port := metricsPort(t)
	var base kustomization
	readYAML(t, filepath.Join(deployDir, "base", "kustomization.yaml"), &base)
	n := 0
	for _, file := range base.Resources {
		raw, err := os.ReadFile(filepath.Join(deployDir, "base", file))
		testenv.Must(t, err, "read "+file)
		for _, d := range decodeObjects(t, file, raw) {
			if d.Kind != "Deployment" {
				continue
			}
			n++
			a := d.Spec.Template.Metadata.Annotations
			want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("Deployment %s: pod annotation %s=%q, want %q", d.Metadata.Name, k, a[k], v)
				}
			}
			if _, c, ok := shopCommand(d); !ok || !hasPort(c, "metrics", port) {
				t.Errorf("Deployment %s: its shop container declares no port metrics (%s), which a PodMonitor names", d.Metadata.Name, port)
			}
		}
	}
	if n == 0 {
		t.Fatal("the base has no Deployment")
	}
}

// kustomize renders an overlay as `kubectl kustomize` does (or kustomize
// build, when installed); it skips t when neither is.
func kustomize(t testing.TB, dir string) []byte {
	t.Helper()
	var cmd *exec.Cmd
	if _, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command("kustomize", "build", dir)
	} else if _, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command("kubectl", "kustomize", dir)
	} else {
		t.Skip("neither kubectl nor kustomize is installed: the overlays are not rendered")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// kubernetesCopy copies deploy/kubernetes to a directory of t's own, with a
// dev/secrets.env and a prod/secrets.env (each user's, which git ignores)
// if there are none, so that every overlay renders: dev's holds a
// JWT_SECRET, prod's is a copy of the committed secrets.env.example.
func kubernetesCopy(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kubernetes")
	testenv.Must(t, os.CopyFS(dir, os.DirFS(deployDir)), "copy deploy/kubernetes")
	secrets := filepath.Join(dir, "dev", "secrets.env")
	if _, err := os.Stat(secrets); errors.Is(err, os.ErrNotExist) {
		testenv.Must(t, os.WriteFile(secrets, []byte("JWT_SECRET="+strings.Repeat("k", 32)+"\n"), 0o600), "write secrets.env")
	}
	prod := filepath.Join(dir, "prod", "secrets.env")
	if _, err := os.Stat(prod); errors.Is(err, os.ErrNotExist) {
		example, err := os.ReadFile(prod + ".example")
		testenv.Must(t, err, "read prod/secrets.env.example")
		testenv.Must(t, os.WriteFile(prod, example, 0o600), "write prod/secrets.env")
	}
	return dir
}

// TestObservabilityKustomizeOverlays: every overlay of deploy/kubernetes
// renders; the observability overlay has a PodMonitor for the API, the
// relay and every consumer group's Deployment, on the port of METRICS_ADDR
// and under the job names the alerts and the dashboard use, and it turns
// tracing and the consumers' queue depths on; the base leaves tracing off.
func TestObservabilityKustomizeOverlays(t *testing.T) {
	t.Parallel()
	dir := kubernetesCopy(t)
	overlays, err := filepath.Glob(filepath.Join(dir, "*", "kustomization.yaml"))
	testenv.Must(t, err, "list overlays")
	rendered := map[string][]k8sObject{}
	for _, k := range overlays {
		name := filepath.Base(filepath.Dir(k))
		rendered[name] = decodeObjects(t, name, kustomize(t, filepath.Dir(k)))
	}
	for _, want := range []string{"base", "dev", "observability"} {
		if len(rendered[want]) == 0 {
			t.Fatalf("overlay %s rendered nothing", want)
		}
	}
	configMap := func(objs []k8sObject) map[string]string {
		for _, o := range objs {
			if o.Kind == "ConfigMap" && strings.HasPrefix(o.Metadata.Name, "shop-config") {
				return o.Data
			}
		}
		t.Fatal("no ConfigMap shop-config")
		return nil
	}
	if v, ok := configMap(rendered["base"])["OTEL_EXPORTER_OTLP_ENDPOINT"]; !ok || v != "" {
		t.Errorf("the base's OTEL_EXPORTER_OTLP_ENDPOINT is %q (set: %v), want it empty: tracing off until an overlay names a collector", v, ok)
	}

	objs := rendered["observability"]
	config := configMap(objs)
	_, port, err := net.SplitHostPort(config["METRICS_ADDR"])
	testenv.Must(t, err, "METRICS_ADDR")
	if u, err := url.Parse(config["OTEL_EXPORTER_OTLP_ENDPOINT"]); err != nil || u.Scheme != "http" || u.Hostname() == "" || u.Port() != "4318" {
		t.Errorf("the observability overlay's OTEL_EXPORTER_OTLP_ENDPOINT is %q, want a collector's OTLP/HTTP receiver (port 4318)", config["OTEL_EXPORTER_OTLP_ENDPOINT"])
	}
	services := map[string]k8sObject{}
	var deploys, monitors []k8sObject
	var mgmt string
	for _, o := range objs {
		switch o.Kind {
		case "Service":
			services[o.Metadata.Name] = o
		case "Deployment":
			deploys = append(deploys, o)
		case "PodMonitor":
			monitors = append(monitors, o)
			if o.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("PodMonitor %s: apiVersion %s, want monitoring.coreos.com/v1", o.Metadata.Name, o.APIVersion)
			}
		case "Secret":
			if strings.HasPrefix(o.Metadata.Name, "shop-secrets") {
				raw, err := base64.StdEncoding.DecodeString(o.Data["RABBITMQ_MANAGEMENT_URL"])
				testenv.Must(t, err, "decode RABBITMQ_MANAGEMENT_URL")
				mgmt = string(raw)
			}
		}
	}
	servesManagement := func(service string) bool {
		for _, p := range services[service].Spec.Ports {
			if p.Port == 15672 {
				return true
			}
		}
		return false
	}
	if u, err := url.Parse(mgmt); err != nil || u.Port() != "15672" || !servesManagement(u.Hostname()) {
		t.Errorf("RABBITMQ_MANAGEMENT_URL is %q, want the management port (15672) of a Service of the overlay", mgmt)
	}

	groups := map[string]bool{}
	selected := map[string]bool{} // PodMonitors that select a Deployment
	for _, d := range deploys {
		command, c, ok := shopCommand(d)
		if !ok {
			continue // Postgres, Redis, RabbitMQ
		}
		if command[0] == "consume" {
			for _, g := range command[1:] {
				groups[g] = true
			}
		}
		want := scrapeJob(command)
		t.Run(d.Metadata.Name, func(t *testing.T) {
			var by []string
			for _, m := range monitors {
				if !selects(t, m.Spec.Selector, d.Spec.Template.Metadata.Labels) {
					continue
				}
				by = append(by, m.Metadata.Name)
				selected[m.Metadata.Name] = true
				if m.Metadata.Namespace != d.Metadata.Namespace && (m.Spec.NamespaceSelector == nil ||
					!(m.Spec.NamespaceSelector.Any || slices.Contains(m.Spec.NamespaceSelector.MatchNames, d.Metadata.Namespace))) {
					t.Errorf("PodMonitor %s (namespace %s) does not look in namespace %s", m.Metadata.Name, m.Metadata.Namespace, d.Metadata.Namespace)
				}
				if len(m.Spec.PodMetricsEndpoints) != 1 {
					t.Errorf("PodMonitor %s has %d endpoints, want 1 (the metrics port)", m.Metadata.Name, len(m.Spec.PodMetricsEndpoints))
					continue
				}
				ep := m.Spec.PodMetricsEndpoints[0]
				if ep.Path != "" && ep.Path != "/metrics" {
					t.Errorf("PodMonitor %s scrapes %s, want /metrics", m.Metadata.Name, ep.Path)
				}
				if !hasPort(c, ep.Port, port) {
					t.Errorf("PodMonitor %s scrapes port %q, which is not the port of METRICS_ADDR (%s) in container %s: %+v", m.Metadata.Name, ep.Port, port, c.Name, c.Ports)
				}
				job := m.Metadata.Namespace + "/" + m.Metadata.Name // the Operator's default
				for _, r := range ep.Relabelings {
					if r.TargetLabel != "job" {
						continue
					}
					if len(r.SourceLabels) > 0 || (r.Action != "" && r.Action != "replace") || r.Replacement == nil {
						t.Errorf("PodMonitor %s sets job in a way this test does not follow: %+v", m.Metadata.Name, r)
						continue
					}
					job = *r.Replacement
				}
				if job != want {
					t.Errorf("PodMonitor %s names the job %q, want %q (alerts.yml and the dashboard use it)", m.Metadata.Name, job, want)
				}
			}
			if len(by) != 1 {
				t.Errorf("pods of labels %v are selected by PodMonitors %v, want exactly one", d.Spec.Template.Metadata.Labels, by)
			}
		})
	}
	for _, g := range handlers.Names() {
		if !groups[g] {
			t.Errorf("no Deployment of the overlay runs consumer group %s", g)
		}
	}
	for _, m := range monitors {
		if !selected[m.Metadata.Name] {
			t.Errorf("PodMonitor %s selects no shop Deployment", m.Metadata.Name)
		}
	}
}

// TestObservedMetricsAreExported runs `shop run` (the API, the relay and
// every consumer group in one process), places an order through its API
// until it is confirmed, and checks that its /metrics exports every metric
// the alerts and the dashboard name (except Prometheus's own), so that no
// panel stays empty and no alert is silently never true.
func TestObservedMetricsAreExported(t *testing.T) {
	t.Parallel()
	var want []string
	for _, m := range observedMetrics(t) {
		if !prometheusOwnMetrics[m] {
			want = append(want, m)
		}
	}
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	amqpURL, err := url.Parse(testenv.AMQPServerURL())
	testenv.Must(t, err, "AMQP url")
	env["RABBITMQ_MANAGEMENT_URL"] = (&url.URL{Scheme: "http", User: amqpURL.User, Host: net.JoinHostPort(amqpURL.Hostname(), "15672")}).String()
	run, addrs := startListening(t, env, "run")
	base := "http://" + addrs["api"]

	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@observe.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@observe.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"OBS-1","name":"Lamp","price_cents":2500,"stock":5}`, http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"ann@observe.test","name":"Ann","password":"ann secret"}`, http.StatusCreated)
	ann := postJSON(t, base+"/v1/tokens", "", `{"email":"ann@observe.test","password":"ann secret"}`, http.StatusOK)["token"].(string)
	placed := postJSON(t, base+"/v1/orders", ann, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, product), http.StatusAccepted)
	if order := readAtLeast(t, base+"/v1/orders/"+placed["id"].(string)+"?min_version=2", ann); order["status"] != "confirmed" {
		t.Fatalf("order = %v, want confirmed", order)
	}

	// Gauges read in the background (the outbox's, the queues') appear
	// within their period.
	testenv.Eventually(t, 30*time.Second, func() error {
		exported := map[string]bool{}
		for line := range strings.Lines(metrics(t, addrs["ops"])) {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, _, _ := strings.Cut(line, " ")
			name, _, _ = strings.Cut(name, "{")
			exported[name] = true
		}
		var missing []string
		for _, m := range want {
			if !exported[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("/metrics of shop run lacks %v, which the alerts or the dashboard use", missing)
		}
		return nil
	})
	stop(t, run)
}
