// Command lmbench is lastmile's load generator: it runs the scenarios of
// internal/bench against a lastmile binary, mosquitto and bare upstream
// mochi-mqtt, and prints a table with lastmile's ratio to each (see
// docs/performance.md).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lastmile-dm/lastmile/internal/bench"
)

const usage = `Usage:
  lmbench list                       scenarios and the standard set
  lmbench suite [flags]              the standard set against lastmile, mosquitto and bare mochi
  lmbench run -scenario NAME [flags] one scenario against one target
  lmbench mochi-serve -addr HOST:PORT bare upstream mochi-mqtt (the suite's "mochi" target)
  lmbench connect-worker             internal: a generator process of connect -procs N

Flags:
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lmbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("a subcommand is required")
	}
	switch args[0] {
	case "mochi-serve":
		return mochiServe(args[1:])
	case "connect-worker": // started by the connect scenario with -procs
		return bench.RunConnectWorker(os.Stdin, os.Stdout)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	lastmileBin := fs.String("lastmile-bin", "bin/lastmile", "lastmile `binary` (make build)")
	mosquittoBin := fs.String("mosquitto-bin", "/usr/sbin/mosquitto", "mosquitto `binary`")
	store := fs.String("store", "embedded", "lastmile store `engine`: embedded or redis")
	redisAddr := fs.String("redis-addr", "", "Redis `host:port` for --store redis")
	runs := fs.Int("runs", 3, "runs per target (suite); medians are reported")
	jsonOut := fs.String("json", "", "write the report as JSON to `file`")
	only := fs.String("cases", "", "suite: run only cases whose name contains one of these comma-separated `words`")
	target := fs.String("target", "lastmile", "run: `lastmile`, mosquitto or mochi")
	targets := fs.String("targets", "lastmile,mosquitto,mochi", "suite: comma-separated `targets`, lastmile first; ratios are lastmile/each other")
	pprofAddr := fs.String("pprof-addr", "", "serve the generator's own pprof handlers on this loopback `host:port` (LMBENCH_PPROF profiles the server)")
	var p bench.Params
	scenario := fs.String("scenario", "", "run: scenario `name`")
	fs.IntVar(&p.Devices, "devices", 1000, "run: devices")
	fs.IntVar(&p.Subs, "subs", 2, "run: subscribers")
	qos := fs.Int("qos", 1, "run: QoS 0 or 1")
	fs.IntVar(&p.Rate, "rate", 0, "run: offered msg/s in total (0 = flat out)")
	fs.DurationVar(&p.Duration, "duration", 5*time.Second, "run: publishing time")
	fs.IntVar(&p.Payload, "payload", 64, "run: payload bytes")
	fs.BoolVar(&p.Persistent, "persistent", false, "run: persistent sessions")
	fs.DurationVar(&p.Hold, "hold", 0, "run: connect: hold the idle connections this long (pinging every 30 s) and report RSS per connection again, e.g. 150s (past Go's 2-minute forced GC)")
	fs.IntVar(&p.Sources, "sources", 8, "run: source addresses 127.0.0.1..N")
	fs.IntVar(&p.Window, "window", 4, "run: QoS 1 publishes unacknowledged per client")
	nodes := fs.Int("nodes", 1, "lastmile processes sharing the Redis store (-store redis); connect spreads over them")
	fs.IntVar(&p.Procs, "procs", 1, "run: connect: generator processes, each with its own open-file limit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	p.QoS = byte(*qos) //nolint:gosec // 0..2
	if *qos < 0 || *qos > 1 {
		return fmt.Errorf("-qos %d: the harness publishes QoS 0 or 1", *qos)
	}

	switch args[0] {
	case "list":
		for _, s := range bench.Scenarios() {
			fmt.Printf("%-16s %s\n", s.Name, s.Help)
		}
		fmt.Println("\nstandard set (lmbench suite, make bench):")
		for _, c := range bench.Standard {
			b, _ := json.Marshal(c.Params)
			fmt.Printf("  %-32s %s %s\n", c.Name, c.Scenario, b)
		}
		return nil
	case "suite", "run":
	default:
		return fmt.Errorf("unknown subcommand %q", args[0])
	}

	if *pprofAddr != "" {
		stopPprof, err := servePprof(*pprofAddr)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "lmbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lm := &bench.Lastmile{Binary: *lastmileBin, DataDir: filepath.Join(dir, "lastmile"), Nodes: *nodes}
	if *store == "redis" {
		lm.Extra = []string{"--store", "redis", "--redis-addr", *redisAddr}
	}
	if lm.Nodes > 1 && *store != "redis" {
		return fmt.Errorf("-nodes %d: several lastmile nodes share a Redis store: add -store redis -redis-addr host:port", lm.Nodes)
	}
	mq := &bench.Mosquitto{Binary: *mosquittoBin, Dir: filepath.Join(dir, "mosquitto")}
	if err := os.MkdirAll(mq.Dir, 0o700); err != nil {
		return err
	}
	if args[0] == "suite" || *target == "lastmile" {
		if _, err := os.Stat(*lastmileBin); err != nil { //nolint:gosec // G703: the operator names the binary to benchmark
			return fmt.Errorf("lastmile binary: %w (run make build)", err)
		}
	}

	byName := map[string]bench.Target{"lastmile": lm, "mosquitto": mq, "mochi": &bench.Mochi{}}
	if args[0] == "run" {
		t, ok := byName[*target]
		if !ok {
			return fmt.Errorf("-target %q: want lastmile, mosquitto or mochi", *target)
		}
		c := bench.Case{Name: *scenario, Scenario: *scenario, Params: p}
		if s, ok := bench.Lookup(*scenario); ok && !s.Applies(t) {
			return fmt.Errorf("scenario %s on %s: %w (lastmile only)", *scenario, t.Name(), bench.ErrNotApplicable)
		}
		if err := bench.Provision(ctx, []bench.Target{t}, []bench.Case{c}); err != nil {
			return err
		}
		res, err := bench.RunOnce(ctx, t, c, os.Stderr)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(b))
		return nil
	}

	cases := bench.Standard
	if *only != "" {
		cases = nil
		for _, c := range bench.Standard {
			for _, w := range strings.Split(*only, ",") {
				if w != "" && strings.Contains(c.Name, w) {
					cases = append(cases, c)
					break
				}
			}
		}
	}
	var suiteTargets []bench.Target
	for i, name := range strings.Split(*targets, ",") {
		t, ok := byName[name]
		if !ok {
			return fmt.Errorf("-targets: unknown target %q (lastmile, mosquitto, mochi)", name)
		}
		if (i == 0) != (name == "lastmile") {
			return fmt.Errorf("-targets %q: lastmile must come first, once", *targets)
		}
		suiteTargets = append(suiteTargets, t)
	}
	rep, err := bench.RunSuite(ctx, bench.SuiteConfig{Targets: suiteTargets, Cases: cases, Runs: *runs, Log: os.Stderr})
	if err != nil {
		return err
	}
	rep.WriteTable(os.Stdout)
	if *jsonOut != "" {
		if err := rep.WriteJSON(*jsonOut); err != nil {
			return err
		}
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d runs failed", len(rep.Errors))
	}
	return nil
}

// mochiServe runs bare mochi until SIGTERM or SIGINT.
func mochiServe(args []string) error {
	fs := flag.NewFlagSet("mochi-serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1883", "listen `address`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return bench.ServeMochi(ctx, *addr)
}

// servePprof serves the generator's pprof handlers, so that a profile
// shows the generator's side of a scenario (the tunnel scenario's device
// endpoint and gRPC client run here).
func servePprof(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
