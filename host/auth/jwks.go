package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// remoteKeys is a JWKS fetched by keyfunc/jwkset: a goroutine refreshes it
// every JWKSRefreshInterval; a failed refresh keeps the keys already held
// (jwkset replaces them only after a successful fetch and decode); an
// unknown kid triggers one refresh through a rate.Limiter that allows one
// per JWKSUnknownKIDInterval and makes no one wait for the next (its wait
// is capped at JWKSTimeout, shorter than the interval, so rate.Limiter.Wait
// refuses at once).
type remoteKeys struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
	tr     *http.Transport
	source string // the URL without credentials, for logs
}

// stop ends the refresh goroutine and closes idle connections.
func (r *remoteKeys) stop() {
	r.cancel()
	r.tr.CloseIdleConnections()
}

func newRemoteKeys(o Options) (*remoteKeys, error) {
	u, _ := url.Parse(o.JWKSURL) // checked by jwksDefaults
	redacted := u.Redacted()
	log := o.Logger
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.JWKSRootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.JWKSRootCAs, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{
		Transport: limitedTransport{base: tr, max: o.JWKSMaxBytes},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != "https" && !o.JWKSAllowHTTP {
				return fmt.Errorf("JWKS redirected to %s, which is not https", req.URL.Redacted())
			}
			if len(via) >= 5 {
				return errors.New("JWKS: more than 5 redirects")
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	noErrorFirst := o.JWKSOptionalAtStart
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{o.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               o.JWKSTimeout,
		NoErrorReturnFirstHTTPReq: &noErrorFirst,
		RateLimitWaitMax:          o.JWKSTimeout,
		RefreshInterval:           o.JWKSRefreshInterval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(o.JWKSUnknownKIDInterval), 1),
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("JWKS refresh failed; the keys already fetched stay in use", "url", redacted, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		tr.CloseIdleConnections()
		return nil, optErr("JWKSURL", "cannot fetch %s: %v", redacted, err)
	}
	return &remoteKeys{kf: kf, cancel: cancel, tr: tr, source: redacted}, nil
}

// key returns the key for t, whose alg is of family fam: by kid (fetching
// the set again, rate limited, when the kid is unknown), or, without a kid,
// every key of the set that fits alg.
func (r *remoteKeys) key(ctx context.Context, t *jwt.Token, fam family) (any, error) {
	got, err := r.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, refuse(ReasonUnknownKey, fmt.Errorf("JWKS %s: %w", r.source, err), "no key known for this token")
	}
	alg := t.Method.Alg()
	switch k := got.(type) {
	case jwt.VerificationKeySet:
		var fit jwt.VerificationKeySet
		for _, key := range k.Keys {
			if keyFits(key, fam, alg) {
				fit.Keys = append(fit.Keys, key)
			}
		}
		return fit, nil
	default:
		if !keyFits(k, fam, alg) {
			return nil, refuse(ReasonUnknownKey, fmt.Errorf("JWKS %s: key %T does not fit %s", r.source, k, alg), "no key known for this token")
		}
		return k, nil
	}
}

// keyFits reports whether a fetched key is a public key of alg's family: a
// symmetric ("oct") key in a JWKS is never used.
func keyFits(key any, fam family, alg string) bool {
	k, err := fromPublic(key)
	return err == nil && k.fam == fam && k.fits(alg)
}

// limitedTransport caps the size of a response body.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, t.max)
	return resp, nil
}
