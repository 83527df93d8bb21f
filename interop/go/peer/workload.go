package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// x509Report is one X.509 context as the tests read it.
type x509Report struct {
	SVIDs   []svidReport `json:"svids"`
	Bundles []string     `json:"bundles"`
}

type svidReport struct {
	ID     string `json:"id"`
	Serial string `json:"serial"`
	Hint   string `json:"hint"`
}

func report(x *workloadapi.X509Context) x509Report {
	r := x509Report{SVIDs: []svidReport{}, Bundles: []string{}}
	for _, svid := range x.SVIDs {
		r.SVIDs = append(r.SVIDs, svidReport{
			ID:     svid.ID.String(),
			Serial: svid.Certificates[0].SerialNumber.Text(16),
			Hint:   svid.Hint,
		})
	}
	for _, bundle := range x.Bundles.Bundles() {
		r.Bundles = append(r.Bundles, bundle.TrustDomain().IDString())
	}
	sort.Strings(r.Bundles)
	return r
}

func printJSON(value any) error {
	line, err := json.Marshal(value)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}

func runX509(args []string) error {
	var s settings
	flags := flag.NewFlagSet("x509", flag.ContinueOnError)
	s.register(flags)
	watch := flags.Int("watch", 0, "print this many updates of WatchX509Context, then stop")
	if err := parse(flags, args); err != nil {
		return err
	}
	ctx, cancel := s.context()
	defer cancel()
	client, err := workloadapi.New(ctx, s.clientOptions()...)
	if err != nil {
		return err
	}
	defer client.Close()
	if *watch == 0 {
		x, err := client.FetchX509Context(ctx)
		if err != nil {
			return err
		}
		return printJSON(report(x))
	}
	watcher := &printingWatcher{remaining: *watch, cancel: cancel}
	err = client.WatchX509Context(ctx, watcher)
	if watcher.remaining == 0 {
		return nil
	}
	if watcher.last != nil {
		return fmt.Errorf("%d updates missing: %w (last watch error: %v)", watcher.remaining, err, watcher.last)
	}
	return fmt.Errorf("%d updates missing: %w", watcher.remaining, err)
}

// printingWatcher prints each update and cancels the watch after the last one wanted.
type printingWatcher struct {
	remaining int
	cancel    context.CancelFunc
	last      error
}

func (w *printingWatcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	if w.remaining == 0 {
		return
	}
	_ = printJSON(report(x))
	w.remaining--
	if w.remaining == 0 {
		w.cancel()
	}
}

func (w *printingWatcher) OnX509ContextWatchError(err error) {
	if !errors.Is(err, context.Canceled) {
		w.last = err
	}
}

// deadline is the context's deadline, or a minute from now.
func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}
