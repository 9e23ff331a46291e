// Command lmctl is lastmile's command-line client: it speaks the northbound
// gRPC API (devices, tokens, roles, applications, commands, events) with a
// bearer token.
//
//	lmctl [--server host:port] [--token lmt_...] [-o table|json] <resource> <verb> [flags] [args]
//
// --server and --token default to $LASTMILE_SERVER (localhost:9090) and
// $LASTMILE_TOKEN. Output is a human table, or JSON with -o json.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lmctl [global flags] <resource> <verb> [flags] [args]

resources and verbs:
  devices   create|get|list|update|delete|set-password|kick
  tokens    create|list|revoke
  roles     put|get|list|delete
  apps      create|get|list|update|delete|rotate-secret
  tunnel    --device ID --target host:port --listen addr   (forward; also list|close|key)
  shadow    get|update|delete|list|query
  config    create NAME [--format F] [--file DOC] | versions NAME | assign NAME VERSION --device|--group|--query | status [ROLLOUT]
  cmd       invoke DEVICE NAME [--payload JSON]   (--timeout is the command's)
  events    watch [--device ID] [--label k=v] [--type presence|telemetry|...]
  snmp      get|walk|set DEVICE OID...   (set: OID TYPE VALUE, types as snmpset)

global flags:
  --server host:port   gRPC address (env LASTMILE_SERVER, default localhost:9090)
  --token lmt_...      API token (env LASTMILE_TOKEN)
  --tls                use TLS; --ca FILE trusts a private CA
  -o table|json        output format (default table)
  --timeout 30s        per-call timeout

Run 'lmctl <resource> <verb> -h' for the verb's flags.
`

// cli is one invocation's connection and output settings.
type cli struct {
	out    io.Writer
	json   bool
	conn   *grpc.ClientConn
	token  string
	timout time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lmctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	server := fs.String("server", envOr("LASTMILE_SERVER", "localhost:9090"), "")
	tok := fs.String("token", os.Getenv("LASTMILE_TOKEN"), "")
	useTLS := fs.Bool("tls", false, "")
	ca := fs.String("ca", "", "")
	output := fs.String("o", "table", "")
	timeout := fs.Duration("timeout", 30*time.Second, "")
	globals, verbArgs := splitGlobals(args)
	if err := fs.Parse(globals); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := defaultVerb(append(fs.Args(), verbArgs...))
	if len(rest) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "lmctl: -o must be table or json, not %q\n", *output)
		return 2
	}
	cmd, ok := commands[rest[0]+" "+rest[1]]
	if !ok {
		fmt.Fprintf(stderr, "lmctl: unknown command %q\n\n%s", rest[0]+" "+rest[1], usage)
		return 2
	}
	if *tok == "" {
		fmt.Fprintln(stderr, "lmctl: no API token: pass --token or set LASTMILE_TOKEN (the server prints a bootstrap token on first start; 'lastmile token create' makes more)")
		return 2
	}
	creds := insecure.NewCredentials()
	if *useTLS || *ca != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if *ca != "" {
			pem, err := os.ReadFile(*ca)
			if err != nil {
				fmt.Fprintf(stderr, "lmctl: --ca: %v\n", err)
				return 2
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				fmt.Fprintf(stderr, "lmctl: --ca: no PEM certificates in %s\n", *ca)
				return 2
			}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(*server, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "lmctl: %v\n", err)
		return 1
	}
	defer conn.Close()
	c := &cli{out: stdout, json: *output == "json", conn: conn, token: *tok, timout: *timeout}
	if err := cmd(c, rest[2:], stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "lmctl %s %s: %v\n", rest[0], rest[1], err)
			return 2
		}
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "lmctl: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(stderr, "lmctl: %v\n", err)
		}
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// ctx returns a call context carrying the bearer token.
func (c *cli) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token), cancel
}

// pages calls page with each page token of a list ("" first), each call
// with its own deadline, until page returns no next token or stop.
func (c *cli) pages(page func(ctx context.Context, token string) (next string, stop bool, err error)) error {
	token := ""
	for {
		ctx, cancel := c.ctx()
		next, stop, err := page(ctx, token)
		cancel()
		if err != nil || next == "" || stop {
			return err
		}
		token = next
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// verbFlags makes a flag set for one verb; parse allows flags after args.
func verbFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags that may come before or after positional args.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// globalFlags are accepted anywhere on the command line, so
// "lmctl devices get dev1 -o json" works like "lmctl -o json devices get dev1".
var globalFlags = map[string]bool{"server": true, "token": true, "ca": true, "o": true, "timeout": true, "tls": false, "h": false, "help": false}

// splitGlobals moves global flags (with their values) in front of
// everything else: it returns them, then the other arguments in order.
func splitGlobals(args []string) (globals, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || name == "" {
			rest = append(rest, a)
			continue
		}
		n, _, hasValue := strings.Cut(name, "=")
		takesValue, ok := globalFlags[n]
		if !ok || (n == "h" || n == "help") && len(rest) >= 2 {
			rest = append(rest, a) // a verb flag (or help for a verb)
			continue
		}
		globals = append(globals, a)
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			globals = append(globals, args[i])
		}
	}
	return globals, rest
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
