package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Case is one scenario with fixed parameters in a suite.
type Case struct {
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Params   Params `json:"params"`
}

// Standard is the set `make bench` runs: the figures issue #3 sets goals
// for, sized to finish in about ten minutes for both brokers, three runs
// each, on a 2-core machine.
var Standard = []Case{
	{"connect 5000", "connect", Params{Devices: 5000, Sources: 8}},
	{"fanin qos1 1000->2 flat out", "fanin", Params{Devices: 1000, Subs: 2, QoS: 1, Duration: 5 * time.Second, Payload: 64, Sources: 8, Window: 1}},
	{"fanin qos1 1000->2 at 5000/s", "fanin", Params{Devices: 1000, Subs: 2, QoS: 1, Rate: 5000, Duration: 5 * time.Second, Payload: 64, Sources: 8, Window: 4}},
	{"fanout qos0 1->1000 flat out", "fanout", Params{Subs: 1000, QoS: 0, Duration: 5 * time.Second, Payload: 64, Sources: 8, Window: 1}},
	{"fanout qos1 1->1000 flat out", "fanout", Params{Subs: 1000, QoS: 1, Duration: 5 * time.Second, Payload: 64, Sources: 8, Window: 16}},
	{"fanout qos0 1->1000 at 20/s", "fanout", Params{Subs: 1000, QoS: 0, Rate: 20, Duration: 5 * time.Second, Payload: 64, Sources: 8}},
	{"durable qos1 1000x5/s ->2", "fanin", Params{Devices: 1000, Subs: 2, QoS: 1, Rate: 5000, Duration: 5 * time.Second, Payload: 64, Sources: 8, Window: 4, Persistent: true}},
	{"reconnect-storm 2000", "reconnect-storm", Params{Devices: 2000, Sources: 8}},
	// lastmile only: mosquitto has no shadows, so no ratio. Both saturate
	// the server; with 1000 devices waiting the round trip is mostly
	// queueing (Little's law), 100 shows it at the same throughput.
	{"shadow 100x1 flat out", "shadow", Params{Devices: 100, Window: 1, Duration: 5 * time.Second, Sources: 8}},
	{"shadow 1000x1 flat out", "shadow", Params{Devices: 1000, Window: 1, Duration: 5 * time.Second, Sources: 8}},
	{"tunnel 4x2s", "tunnel", Params{Duration: 2 * time.Second}},
	{"snmp get 2x2s", "snmp", Params{Duration: 2 * time.Second}},
}

// SuiteConfig says what a suite runs against.
type SuiteConfig struct {
	// Targets[0] is the broker under test; every other target gets a
	// ratio column Targets[0] / Targets[i].
	Targets []Target
	Cases   []Case
	Runs    int
	Log     io.Writer
}

// Sample is one case's figure on one target over every run.
type Sample struct {
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
}

// Row is one figure of one case on both targets.
type Row struct {
	Case    string            `json:"case"`
	Figure  string            `json:"figure"`
	Unit    string            `json:"unit"`
	Higher  bool              `json:"higher_is_better"`
	Targets map[string]Sample `json:"targets"`
	// Ratio is Targets[0] / Targets[1] (NaN when either is missing);
	// Ratios holds Targets[0] / Targets[i] by the name of target i.
	Ratio  float64            `json:"ratio"`
	Ratios map[string]float64 `json:"-"`
}

// Report is a suite's outcome.
type Report struct {
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	CPUs       int       `json:"cpus"`
	LoadBefore float64   `json:"load_before"`
	LoadAfter  float64   `json:"load_after"`
	Runs       int       `json:"runs"`
	Targets    []string  `json:"targets"`
	Rows       []Row     `json:"rows"`
	Errors     []string  `json:"errors,omitempty"`
	// Notes say which cases were skipped on a target (lastmile-only
	// scenarios on mosquitto).
	Notes []string `json:"notes,omitempty"`
}

// RunOnce starts target, runs one case and stops the target: every run
// gets a fresh broker process on the same provisioned data.
func RunOnce(ctx context.Context, t Target, c Case, log io.Writer) (Result, error) {
	s, ok := Lookup(c.Scenario)
	if !ok {
		return Result{}, fmt.Errorf("unknown scenario %q", c.Scenario)
	}
	if !s.Applies(t) {
		return Result{}, fmt.Errorf("%s on %s: %w (lastmile only)", c.Scenario, t.Name(), ErrNotApplicable)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := t.Start(sctx)
	cancel()
	if err != nil {
		return Result{}, fmt.Errorf("start %s: %w", t.Name(), err)
	}
	defer func() { _ = t.Stop() }()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute+c.Params.Hold)
	defer cancel()
	return s.Run(rctx, Env{Target: t, Log: log}, c.Params)
}

// Provision makes sure every target holds devices for the biggest case.
func Provision(ctx context.Context, targets []Target, cases []Case) error {
	n := 0
	for _, c := range cases {
		s, ok := Lookup(c.Scenario)
		if !ok {
			return fmt.Errorf("unknown scenario %q", c.Scenario)
		}
		n = max(n, s.Devices(c.Params))
	}
	for _, t := range targets {
		if _, ok := t.(*Lastmile); !ok {
			if err := t.Provision(ctx, n); err != nil {
				return fmt.Errorf("provision %s: %w", t.Name(), err)
			}
			continue
		}
		// lastmile provisions through its API, so it must run.
		if err := t.Start(ctx); err != nil {
			return err
		}
		err := t.Provision(ctx, n)
		_ = t.Stop()
		if err != nil {
			return fmt.Errorf("provision %s: %w", t.Name(), err)
		}
	}
	return nil
}

// RunSuite runs every case Runs times on each target, rotating which
// target goes first (with two: A B, B A, A B) so that drift of a shared
// machine hits all alike.
func RunSuite(ctx context.Context, cfg SuiteConfig) (*Report, error) {
	rep := &Report{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadBefore: loadAvg(), Runs: cfg.Runs}
	for _, t := range cfg.Targets {
		rep.Targets = append(rep.Targets, t.Name())
	}
	if err := Provision(ctx, cfg.Targets, cfg.Cases); err != nil {
		return nil, err
	}
	for _, c := range cfg.Cases {
		results := map[string][]Result{}
		for run := range cfg.Runs {
			order := slices.Clone(cfg.Targets)
			if len(order) == 2 && run%2 == 1 {
				slices.Reverse(order)
			} else if len(order) > 2 {
				k := run % len(order)
				order = append(slices.Clone(order[k:]), order[:k]...)
			}
			for _, t := range order {
				res, err := RunOnce(ctx, t, c, cfg.Log)
				if errors.Is(err, ErrNotApplicable) {
					if run == 0 {
						note := fmt.Sprintf("%s: lastmile only, not run on %s, no ratio", c.Name, t.Name())
						rep.Notes = append(rep.Notes, note)
						fmt.Fprintln(cfg.Log, "  skipped:", note)
					}
					continue
				}
				if err != nil {
					msg := fmt.Sprintf("%s on %s, run %d: %v", c.Name, t.Name(), run+1, err)
					rep.Errors = append(rep.Errors, msg)
					fmt.Fprintln(cfg.Log, "  error:", msg)
					continue
				}
				fmt.Fprintf(cfg.Log, "%-32s %-10s run %d: %s\n", c.Name, t.Name(), run+1, brief(res))
				results[t.Name()] = append(results[t.Name()], res)
			}
		}
		rep.Rows = append(rep.Rows, rows(c.Name, rep.Targets, results)...)
	}
	rep.LoadAfter = loadAvg()
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

func brief(r Result) string {
	var parts []string
	for _, f := range r.Figures {
		parts = append(parts, fmt.Sprintf("%s=%.4g%s", f.Name, f.Value, f.Unit))
	}
	return strings.Join(parts, " ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rows(name string, targets []string, results map[string][]Result) []Row {
	var out []Row
	index := map[string]int{}
	for _, t := range targets {
		for _, res := range results[t] {
			for _, f := range res.Figures {
				i, ok := index[f.Name]
				if !ok {
					i = len(out)
					index[f.Name] = i
					out = append(out, Row{Case: name, Figure: f.Name, Unit: f.Unit, Higher: f.Higher, Targets: map[string]Sample{}})
				}
				s := out[i].Targets[t]
				s.Values = append(s.Values, f.Value)
				out[i].Targets[t] = s
			}
		}
	}
	for i := range out {
		for t, s := range out[i].Targets {
			s.Median = median(s.Values)
			out[i].Targets[t] = s
		}
		out[i].Ratio = math.NaN()
		out[i].Ratios = map[string]float64{}
		for j := 1; j < len(targets); j++ {
			r := math.NaN()
			a, okA := out[i].Targets[targets[0]]
			b, okB := out[i].Targets[targets[j]]
			if okA && okB && b.Median != 0 {
				r = a.Median / b.Median
			}
			out[i].Ratios[targets[j]] = r
			if j == 1 {
				out[i].Ratio = r
			}
		}
	}
	return out
}

// WriteTable prints the report as a text table: medians per target and
// their ratio.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "lmbench: %d runs per target, A/B alternating, medians; %d CPUs, load average %.1f before, %.1f after; %.0f s\n",
		rep.Runs, rep.CPUs, rep.LoadBefore, rep.LoadAfter, rep.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	head := "case\tfigure\tunit\t"
	for _, t := range rep.Targets {
		head += t + "\t"
	}
	for _, t := range rep.Targets[min(1, len(rep.Targets)):] {
		head += rep.Targets[0] + "/" + t + "\t"
	}
	fmt.Fprintln(tw, head)
	last := ""
	for _, r := range rep.Rows {
		name := r.Case
		if name == last {
			name = ""
		}
		last = r.Case
		line := name + "\t" + r.Figure + "\t" + r.Unit + "\t"
		for _, t := range rep.Targets {
			if s, ok := r.Targets[t]; ok {
				line += fmt.Sprintf("%.4g", s.Median) + "\t"
			} else {
				line += "-\t"
			}
		}
		for _, t := range rep.Targets[min(1, len(rep.Targets)):] {
			if v, ok := r.Ratios[t]; !ok || math.IsNaN(v) {
				line += "-\t"
			} else {
				line += fmt.Sprintf("%.2f", v) + "\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, e := range rep.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}

// WriteJSON writes the report for machines (NaN ratios become null).
func (rep *Report) WriteJSON(path string) error {
	out := struct {
		*Report
		Rows []map[string]any `json:"rows"`
	}{Report: rep}
	for _, r := range rep.Rows {
		m := map[string]any{"case": r.Case, "figure": r.Figure, "unit": r.Unit, "higher_is_better": r.Higher, "targets": r.Targets}
		if !math.IsNaN(r.Ratio) {
			m["ratio"] = r.Ratio
		}
		ratios := map[string]float64{}
		for t, v := range r.Ratios {
			if !math.IsNaN(v) {
				ratios[t] = v
			}
		}
		if len(ratios) > 0 {
			m["ratios"] = ratios
		}
		out.Rows = append(out.Rows, m)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644) //nolint:gosec // a report, not a secret
}
