// Command go-spiffe-peer is a go-spiffe v2 program the spiffe-mtls tests drive as a process,
// so that the SPIFFE project's own Go library checks this crate from the other side.
//
// Every mode takes -socket (a Workload API address, e.g. unix:///tmp/agent.sock; default
// SPIFFE_ENDPOINT_SOCKET) and -timeout (default 30s). Exit status: 0 ok, 1 refused or failed
// (the error on stderr), 2 usage.
//
//	server   -authorize-id ID | -authorize-td TD | -authorize-any  [-conns N]
//	         mTLS server on 127.0.0.1:0 (tlsconfig.MTLSServerConfig on a workloadapi.X509Source);
//	         prints "listening ADDR", then per connection "peer ID" (or "refused: ERROR") and
//	         echoes one line; stops after N connections (default: until killed)
//	client   -addr HOST:PORT -authorize-id ID | -authorize-td TD | -authorize-any [-line TEXT]
//	         mTLS dial (tlsconfig.MTLSClientConfig); prints "peer ID", sends the line, prints
//	         "echo TEXT"
//	x509     [-watch N]
//	         the X.509 context as one JSON line; with -watch, one line per update until N
//	         updates (WatchX509Context)
//	jwt-fetch -audience A          a JWT-SVID; prints the token
//	jwt-bundles                    the JWT bundles as one JSON line (trust domain -> key IDs)
//	jwt-validate -audience A -token T
//	         the Workload API's ValidateJWTSVID; prints the SPIFFE ID
//	jwt-parse -audience A -token T [-jwks FILE -trust-domain TD]
//	         jwtsvid.ParseAndValidate with the Workload API's JWT bundles, or with one JWKS file;
//	         prints the SPIFFE ID
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// settings are the flags every mode shares.
type settings struct {
	socket  string
	timeout time.Duration
}

func (s *settings) register(flags *flag.FlagSet) {
	flags.StringVar(&s.socket, "socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "the Workload API address")
	flags.DurationVar(&s.timeout, "timeout", 30*time.Second, "how long the mode may take")
}

// clientOptions points go-spiffe's Workload API client at -socket.
func (s *settings) clientOptions() []workloadapi.ClientOption {
	return []workloadapi.ClientOption{workloadapi.WithAddr(s.socket)}
}

func (s *settings) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

type mode func(args []string) error

var modes = map[string]mode{
	"server":       runServer,
	"client":       runClient,
	"x509":         runX509,
	"jwt-fetch":    runJWTFetch,
	"jwt-bundles":  runJWTBundles,
	"jwt-validate": runJWTValidate,
	"jwt-parse":    runJWTParse,
}

// usageError is a mistake in the command line (exit 2).
type usageError struct{ message string }

func (e usageError) Error() string { return e.message }

func main() {
	if len(os.Args) < 2 || modes[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: go-spiffe-peer server|client|x509|jwt-fetch|jwt-bundles|jwt-validate|jwt-parse [flags]")
		os.Exit(2)
	}
	if err := modes[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "go-spiffe-peer %s: %v\n", os.Args[1], err)
		if _, usage := err.(usageError); usage {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// parse parses a mode's flags; a flag error is a usage error.
func parse(flags *flag.FlagSet, args []string) error {
	flags.SetOutput(os.Stderr)
	if err := flags.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	return nil
}
