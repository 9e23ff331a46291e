package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	_ "github.com/lastmile-dm/lastmile/internal/grpcbuf" // gRPC buffers sized for bulk streams
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
)

// The tunnel commands: "lmctl tunnel --device X --target 127.0.0.1:22
// --listen 127.0.0.1:2222" (verb forward) listens locally and carries each
// accepted connection to the target through the device's MQTT connection.

func init() {
	commands["tunnel forward"] = tunnelForward
	commands["tunnel list"] = tunnelList
	commands["tunnel close"] = tunnelClose
	commands["tunnel key"] = tunnelKey
}

// defaultVerb lets "lmctl tunnel --device ..." mean "lmctl tunnel forward".
func defaultVerb(rest []string) []string {
	if len(rest) >= 1 && rest[0] == "tunnel" && (len(rest) == 1 || (len(rest[1]) > 0 && rest[1][0] == '-')) {
		return append([]string{"tunnel", "forward"}, rest[1:]...)
	}
	return rest
}

// forwardContext ends a forward: Ctrl-C or SIGTERM (tests replace it).
var forwardContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func (c *cli) tunnels() tunnelv1.TunnelServiceClient { return tunnelv1.NewTunnelServiceClient(c.conn) }

var tunnelHeader = []string{"ID", "DEVICE", "TARGET", "OPENED", "CONNECTIONS", "BYTES IN", "BYTES OUT", "BY"}

func tunnelRows(ts_ ...*tunnelv1.Tunnel) [][]string {
	rows := make([][]string, 0, len(ts_))
	for _, t := range ts_ {
		rows = append(rows, []string{t.GetId(), t.GetDeviceId(), t.GetTarget(), ts(t.GetOpenTime()),
			fmt.Sprint(t.GetConnections()), fmt.Sprint(t.GetBytesIn()), fmt.Sprint(t.GetBytesOut()), orDash(t.GetPrincipal())})
	}
	return rows
}

func tunnelForward(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("tunnel", stderr)
	device := fs.String("device", "", "device ID (required)")
	target := fs.String("target", "", "host:port as the device sees it, e.g. 127.0.0.1:22 (required)")
	listen := fs.String("listen", "127.0.0.1:0", "local address to listen on")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *device == "" || *target == "" {
		return usagef("want --device ID --target host:port [--listen addr]")
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	defer func() { _ = l.Close() }()
	ctx, cancel := c.ctx()
	t, err := c.tunnels().OpenTunnel(ctx, &tunnelv1.OpenTunnelRequest{DeviceId: *device, Target: *target})
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "lmctl: forwarding %s -> %s on device %s (tunnel %s); Ctrl-C ends it\n", l.Addr(), *target, *device, t.GetId())

	run, stop := forwardContext()
	defer stop()
	var ended error
	var once sync.Once
	end := func(err error) {
		once.Do(func() { ended = err })
		stop()
	}
	go func() {
		<-run.Done()
		_ = l.Close()
	}()
	var wg sync.WaitGroup
	for {
		conn, err := l.Accept()
		if err != nil {
			break
		}
		wg.Go(func() {
			err := c.forwardConn(run, t.GetId(), conn.(*net.TCPConn))
			switch status.Code(err) {
			case codes.OK, codes.Canceled:
			case codes.NotFound:
				end(fmt.Errorf("tunnel %s has ended (idle timeout, lifetime, closed, or the device went away)", t.GetId()))
			default:
				fmt.Fprintf(stderr, "lmctl: connection from %s: %s\n", conn.RemoteAddr(), status.Convert(err).Message())
			}
		})
	}
	wg.Wait()
	ctx, cancel = c.ctx()
	defer cancel()
	if _, err := c.tunnels().CloseTunnel(ctx, &tunnelv1.CloseTunnelRequest{TunnelId: t.GetId()}); err != nil && status.Code(err) != codes.NotFound {
		fmt.Fprintf(stderr, "lmctl: closing tunnel %s: %s\n", t.GetId(), status.Convert(err).Message())
	}
	return ended
}

// forwardConn carries one local connection through the tunnel, passing
// half-closes both ways.
func (c *cli) forwardConn(ctx context.Context, id string, conn *net.TCPConn) error {
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	s, err := c.tunnels().Connect(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&tunnelv1.ConnectRequest{TunnelId: id}); err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if s.Send(&tunnelv1.ConnectRequest{Data: buf[:n]}) != nil {
					return // Recv reports why
				}
			}
			if errors.Is(err, io.EOF) {
				_ = s.Send(&tunnelv1.ConnectRequest{CloseWrite: true})
				_ = s.CloseSend()
				return
			}
			if err != nil {
				cancel()
				return
			}
		}
	}()
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(m.GetData()) > 0 {
			if _, err := conn.Write(m.GetData()); err != nil {
				return status.Error(codes.Canceled, "local connection closed")
			}
		}
		if m.GetCloseWrite() {
			_ = conn.CloseWrite()
		}
	}
}

func tunnelList(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("tunnel list", stderr)
	device := fs.String("device", "", "only tunnels to this device")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	req := &tunnelv1.ListTunnelsRequest{DeviceId: *device, PageSize: 1000}
	all := &tunnelv1.ListTunnelsResponse{}
	err = c.pages(func(ctx context.Context, token string) (string, bool, error) {
		req.PageToken = token
		resp, err := c.tunnels().ListTunnels(ctx, req)
		all.Tunnels = append(all.Tunnels, resp.GetTunnels()...)
		return resp.GetNextPageToken(), false, err
	})
	if err != nil {
		return err
	}
	return c.emit(all, tunnelHeader, tunnelRows(all.Tunnels...))
}

func tunnelClose(c *cli, args []string, stderr io.Writer) error {
	return named(c, "tunnel close", "tunnel ID", args, stderr, func(ctx context.Context, id string) error {
		_, err := c.tunnels().CloseTunnel(ctx, &tunnelv1.CloseTunnelRequest{TunnelId: id})
		return err
	})
}

func tunnelKey(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("tunnel key", stderr), args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	k, err := c.tunnels().GetTunnelKey(ctx, &tunnelv1.GetTunnelKeyRequest{})
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(k, nil, nil)
	}
	_, err = fmt.Fprintln(c.out, k.GetPublicKey())
	return err
}
