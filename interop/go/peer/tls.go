package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// authorization is the authorizer a mode's flags ask for: exactly one of them.
type authorization struct {
	id, td string
	any    bool
}

func (a *authorization) register(flags *flag.FlagSet) {
	flags.StringVar(&a.id, "authorize-id", "", "authorize exactly this SPIFFE ID (tlsconfig.AuthorizeID)")
	flags.StringVar(&a.td, "authorize-td", "", "authorize members of this trust domain (tlsconfig.AuthorizeMemberOf)")
	flags.BoolVar(&a.any, "authorize-any", false, "authorize any SPIFFE ID (tlsconfig.AuthorizeAny)")
}

func (a *authorization) authorizer() (tlsconfig.Authorizer, error) {
	given := 0
	for _, set := range []bool{a.id != "", a.td != "", a.any} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, usageError{"give exactly one of -authorize-id, -authorize-td, -authorize-any"}
	}
	switch {
	case a.id != "":
		id, err := spiffeid.FromString(a.id)
		if err != nil {
			return nil, usageError{fmt.Sprintf("-authorize-id: %v", err)}
		}
		return tlsconfig.AuthorizeID(id), nil
	case a.td != "":
		td, err := spiffeid.TrustDomainFromString(a.td)
		if err != nil {
			return nil, usageError{fmt.Sprintf("-authorize-td: %v", err)}
		}
		return tlsconfig.AuthorizeMemberOf(td), nil
	default:
		return tlsconfig.AuthorizeAny(), nil
	}
}

func runServer(args []string) error {
	var s settings
	var auth authorization
	flags := flag.NewFlagSet("server", flag.ContinueOnError)
	s.register(flags)
	auth.register(flags)
	conns := flags.Int("conns", 0, "stop after this many connections (0: until killed)")
	if err := parse(flags, args); err != nil {
		return err
	}
	authorizer, err := auth.authorizer()
	if err != nil {
		return err
	}
	ctx, cancel := s.context()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(s.clientOptions()...))
	cancel()
	if err != nil {
		return fmt.Errorf("X.509 source: %w", err)
	}
	defer source.Close()
	listener, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(source, source, authorizer))
	if err != nil {
		return err
	}
	defer listener.Close()
	fmt.Printf("listening %s\n", listener.Addr())
	for served := 0; *conns == 0 || served < *conns; served++ {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		serve(conn.(*tls.Conn))
	}
	return nil
}

// serve completes the handshake, prints the peer's ID, and echoes one line.
func serve(conn *tls.Conn) {
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		fmt.Printf("refused: %v\n", err)
		return
	}
	id, err := spiffetls.PeerIDFromConnectionState(conn.ConnectionState())
	if err != nil {
		fmt.Printf("refused: %v\n", err)
		return
	}
	fmt.Printf("peer %s\n", id)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	_, _ = conn.Write([]byte(line))
}

func runClient(args []string) error {
	var s settings
	var auth authorization
	flags := flag.NewFlagSet("client", flag.ContinueOnError)
	s.register(flags)
	auth.register(flags)
	addr := flags.String("addr", "", "the server's HOST:PORT")
	line := flags.String("line", "hello from go-spiffe", "the line to send")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *addr == "" {
		return usageError{"-addr is required"}
	}
	authorizer, err := auth.authorizer()
	if err != nil {
		return err
	}
	ctx, cancel := s.context()
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(s.clientOptions()...))
	if err != nil {
		return fmt.Errorf("X.509 source: %w", err)
	}
	defer source.Close()
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: s.timeout},
		Config:    tlsconfig.MTLSClientConfig(source, source, authorizer),
	}
	raw, err := dialer.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	conn := raw.(*tls.Conn)
	defer conn.Close()
	_ = conn.SetDeadline(deadline(ctx))
	id, err := spiffetls.PeerIDFromConnectionState(conn.ConnectionState())
	if err != nil {
		return err
	}
	fmt.Printf("peer %s\n", id)
	if _, err := conn.Write([]byte(*line + "\n")); err != nil {
		return err
	}
	echo, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no echo: %w", err)
	}
	fmt.Printf("echo %s\n", strings.TrimSuffix(echo, "\n"))
	return nil
}
