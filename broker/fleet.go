package broker

import (
	"context"
	"errors"
	"time"
)

// The optional capabilities of a broker shared by several instances. The
// host finds them by type assertion; the memory broker (one instance, no
// network) has none of them.

// Checker is the capability of a broker that can tell whether it works end
// to end. The Redis broker's Check says whether its server answers and its
// subscription connection delivers (a probe it publishes to itself came
// back in time); the host's /readyz reports an instance not ready while it
// fails.
type Checker interface {
	// Check returns nil when the broker serves, else an error matching
	// ErrUnavailable that says why. It reads state kept up to date in the
	// background and does not wait on the network.
	Check(ctx context.Context) error
}

// ErrApplied: an update given an operation id (WithOperation) found that
// operation applied already, by an earlier call (of this or of another
// instance). Nothing was written and the update function's result is not
// committed.
var ErrApplied = errors.New("the operation was applied before")

// ErrLeaseLost: another instance claimed this instance's lease, as if it
// had died; it runs (or ran) on_close for the connections recorded under it.
var ErrLeaseLost = errors.New("the lease was claimed by another instance")

type operationKey struct{}

type operation struct {
	id   string
	keep time.Duration
}

// WithOperation returns a context under which Update runs its
// compare-and-set as the operation id: a broker that records operations
// (Redis) applies one id at most once while its record is kept (keep; zero
// means the broker's default), and an Update that finds it applied before
// fails with ErrApplied. Without it every Update is an operation of its
// own, with a random id. The memory broker ignores it.
func WithOperation(ctx context.Context, id string, keep time.Duration) context.Context {
	return context.WithValue(ctx, operationKey{}, operation{id: id, keep: keep})
}

func operationFrom(ctx context.Context) (operation, bool) {
	op, ok := ctx.Value(operationKey{}).(operation)
	return op, ok && op.id != ""
}

// Fleet is the capability of a broker shared by several instances (Redis)
// that lets a surviving instance run on_close for the connections of an
// instance that died without running it (SPEC 5.12).
//
// Each instance joins under a new id with a lease it renews; it records
// each of its authorised connections (an opaque record the host defines)
// under that id, and deletes the record once the connection's on_close ran.
// When a lease expires, one survivor claims it (ClaimExpired), reads its
// records (ScanConns), runs on_close for each and deletes it, then ends the
// claim (FinishClaim). A claim expires too, so when the claimer dies
// another survivor takes over. Times are Redis's clock, never the
// instances'.
//
// All methods may be called concurrently; errors that come from Redis
// being unreachable match ErrUnavailable.
type Fleet interface {
	// JoinFleet starts the lease of the new instance id for ttl.
	JoinFleet(ctx context.Context, id string, ttl time.Duration) error
	// RenewLease extends id's lease to ttl from now. It fails with
	// ErrLeaseLost when the lease was claimed by another instance. When
	// Redis lost the lease (restarted without its data), it starts it again
	// and reports recreated: the caller records its connections again.
	RenewLease(ctx context.Context, id string, ttl time.Duration) (recreated bool, err error)
	// LeaveFleet ends id's lease at shutdown: it is removed when no record
	// is left under it, else made expired at once, so that a survivor runs
	// on_close for what is left. ErrLeaseLost as RenewLease.
	LeaveFleet(ctx context.Context, id string) error

	// PutConns records (or replaces) connection records under instance id,
	// by connection id.
	PutConns(ctx context.Context, id string, records map[string][]byte) error
	// DeleteConns deletes connection records of instance id; it returns how
	// many existed.
	DeleteConns(ctx context.Context, id string, conns ...string) (int, error)
	// ScanConns returns a batch of about count records of instance id from
	// cursor (0 to start) and the cursor of the next batch (0 at the end).
	ScanConns(ctx context.Context, id string, cursor uint64, count int) (map[string][]byte, uint64, error)

	// ClaimExpired claims for ttl one instance other than me whose lease
	// (or whose claimer's claim) expired, and returns its id; "" when there
	// is none.
	ClaimExpired(ctx context.Context, me string, ttl time.Duration) (string, error)
	// RenewClaim extends me's claim on dead to ttl from now; ErrLeaseLost
	// when another instance took it over.
	RenewClaim(ctx context.Context, dead, me string, ttl time.Duration) error
	// FinishClaim ends me's claim on dead: when no record is left, dead's
	// lease is removed for good and done is true; otherwise the claim stays
	// and expires after retry, for another attempt. ErrLeaseLost as
	// RenewClaim.
	FinishClaim(ctx context.Context, dead, me string, retry time.Duration) (done bool, err error)

	// ForgetOperation deletes the record of operation id on t's entity
	// (see WithOperation) once it cannot be sent again.
	ForgetOperation(ctx context.Context, t Topic, id string) error
}
