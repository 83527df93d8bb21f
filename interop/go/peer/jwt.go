package main

import (
	"flag"
	"fmt"
	"sort"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// jwtFlags are the flags of the JWT modes.
type jwtFlags struct {
	settings
	audience, token, jwks, trustDomain string
}

func parseJWT(name string, args []string, needToken bool) (*jwtFlags, error) {
	f := &jwtFlags{}
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	f.register(flags)
	flags.StringVar(&f.audience, "audience", "", "the audience")
	flags.StringVar(&f.token, "token", "", "the JWT-SVID")
	flags.StringVar(&f.jwks, "jwks", "", "a JWKS file (jwt-parse), instead of the Workload API's bundles")
	flags.StringVar(&f.trustDomain, "trust-domain", "", "the trust domain of -jwks")
	if err := parse(flags, args); err != nil {
		return nil, err
	}
	if name != "jwt-bundles" && f.audience == "" {
		return nil, usageError{"-audience is required"}
	}
	if needToken && f.token == "" {
		return nil, usageError{"-token is required"}
	}
	return f, nil
}

func runJWTFetch(args []string) error {
	f, err := parseJWT("jwt-fetch", args, false)
	if err != nil {
		return err
	}
	ctx, cancel := f.context()
	defer cancel()
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: f.audience}, f.clientOptions()...)
	if err != nil {
		return err
	}
	fmt.Println(svid.Marshal())
	return nil
}

func runJWTBundles(args []string) error {
	f, err := parseJWT("jwt-bundles", args, false)
	if err != nil {
		return err
	}
	ctx, cancel := f.context()
	defer cancel()
	bundles, err := workloadapi.FetchJWTBundles(ctx, f.clientOptions()...)
	if err != nil {
		return err
	}
	keys := map[string][]string{}
	for _, bundle := range bundles.Bundles() {
		ids := []string{}
		for id := range bundle.JWTAuthorities() {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		keys[bundle.TrustDomain().IDString()] = ids
	}
	return printJSON(keys)
}

func runJWTValidate(args []string) error {
	f, err := parseJWT("jwt-validate", args, true)
	if err != nil {
		return err
	}
	ctx, cancel := f.context()
	defer cancel()
	svid, err := workloadapi.ValidateJWTSVID(ctx, f.token, f.audience, f.clientOptions()...)
	if err != nil {
		return err
	}
	fmt.Println(svid.ID)
	return nil
}

func runJWTParse(args []string) error {
	f, err := parseJWT("jwt-parse", args, true)
	if err != nil {
		return err
	}
	var bundles jwtbundle.Source
	if f.jwks != "" {
		td, err := spiffeid.TrustDomainFromString(f.trustDomain)
		if err != nil {
			return usageError{fmt.Sprintf("-trust-domain: %v", err)}
		}
		bundle, err := jwtbundle.Load(td, f.jwks)
		if err != nil {
			return err
		}
		bundles = bundle
	} else {
		ctx, cancel := f.context()
		defer cancel()
		set, err := workloadapi.FetchJWTBundles(ctx, f.clientOptions()...)
		if err != nil {
			return err
		}
		bundles = set
	}
	svid, err := jwtsvid.ParseAndValidate(f.token, bundles, []string{f.audience})
	if err != nil {
		return err
	}
	fmt.Println(svid.ID)
	return nil
}
