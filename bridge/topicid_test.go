package bridge

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// genSession is a session of one generation, with its claims.
type genSession struct {
	fakeSession
	gen    int32
	claims map[string][]int32
}

func (s *genSession) GenerationID() int32                     { return s.gen }
func (s *genSession) MemberID() string                        { return "m" }
func (s *genSession) Claims() map[string][]int32              { return s.claims }
func (s *genSession) Context() context.Context                { return context.Background() }
func (s *genSession) MarkOffset(string, int32, int64, string) {}

// A partition claimed in a later rebalance of the same session gets its
// topic's ID as of that rebalance. With cooperative rebalancing (the
// default) sarama calls Setup only when the member first joins; later
// rebalances add claims to the same session. A topic deleted and created
// again meanwhile has a new ID, and its new records must not be checked
// against the old topic's watermarks. (The ID was read in Setup alone, so
// a claim of a later generation carried the old topic's ID, and workflows
// skipped the new topic's records at offsets the old one had applied.)
func TestAClaimOfALaterGenerationReadsItsTopicsIDAgain(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	ids := &fakeIDs{id: "id-1"}
	b.topicIDs.lookup = ids.lookup
	first := &genSession{gen: 1, claims: map[string][]int32{"orders": {0}}}
	require.NoError(t, claimHandler{b: b}.Setup(first))
	f, err := b.newFlow(first, fakeClaim{}, nil)
	require.NoError(t, err)
	assert.Equal(t, "id-1", f.topicID)

	ids.set("id-2", 0) // the topic is deleted and created again
	later := &genSession{gen: 2, claims: map[string][]int32{"orders": {0, 1}}}
	f, err = b.newFlow(later, fakeClaim{partition: 1}, nil)
	require.NoError(t, err)
	assert.Equal(t, "id-2", f.topicID, "the claim of generation 2 carries the topic's ID of generation 2")

	f, err = b.newFlow(later, fakeClaim{partition: 0}, nil)
	require.NoError(t, err)
	assert.Equal(t, "id-2", f.topicID)
	assert.Equal(t, 2, ids.count(), "the ID is read once per topic and generation")
}

// A claim whose topic's ID cannot be read yet (the metadata request
// failed) waits and reads it again, rather than consuming under the ID read
// in an earlier generation: the topic may have been deleted and created
// again, and its new records would be checked against the old topic's
// watermarks and skipped. (The claim went on at once with the stale ID.)
func TestAClaimWaitsForItsTopicsIDRatherThanUseAStaleOne(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	ids := &fakeIDs{id: "id-1"}
	b.topicIDs.lookup = ids.lookup
	first := &genSession{gen: 1, claims: map[string][]int32{"orders": {0}}}
	require.NoError(t, claimHandler{b: b}.Setup(first))

	ids.set("id-2", 2) // recreated, and the next two lookups fail
	later := &genSession{gen: 2, claims: map[string][]int32{"orders": {1}}}
	f, err := b.newFlow(later, fakeClaim{partition: 1}, nil)
	require.NoError(t, err)
	assert.Equal(t, "id-2", f.topicID)
	assert.Equal(t, 4, ids.count(), "one at the first join, then two failures and the read that succeeded")
}

// fakeIDs reads every topic's ID as id, but fails the next failures
// lookups; it counts the lookups. Safe for concurrent use.
type fakeIDs struct {
	mu                sync.Mutex
	id                string
	failures, lookups int
}

func (f *fakeIDs) lookup(topics []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.failures > 0 {
		f.failures--
		return nil, errors.New("metadata: broker not available")
	}
	out := map[string]string{}
	for _, topic := range topics {
		out[topic] = f.id
	}
	return out, nil
}

// set makes the topics' ID id, and the next failures lookups fail.
func (f *fakeIDs) set(id string, failures int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id, f.failures = id, failures
}

func (f *fakeIDs) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// Cooperative rebalancing (the default) revokes a claim by closing its
// messages; the session lives on. A claim still waiting to read its
// topic's ID lets go when revoked: it retried until the session ended,
// which sarama forces after Rebalance.Timeout, dropping every partition of
// the member. A record that arrives while it waits is kept and consumed
// first once the ID is read.
func TestAClaimWaitingForItsTopicIDLetsGoWhenRevokedAndLosesNothing(t *testing.T) {
	claimWaiting := func(t *testing.T) (*Bridge, *fakeTemporal, *fakeIDs, chan *sarama.ConsumerMessage, chan struct{}) {
		tc := &fakeTemporal{}
		b := newTestBridge(t, tc, &fakeDLQ{})
		ids := &fakeIDs{id: "id-1", failures: 1 << 30} // the metadata cannot be read
		b.topicIDs.lookup = ids.lookup
		b.dispatcher.start(1)
		t.Cleanup(b.dispatcher.stop)
		s := &genSession{gen: 2, claims: map[string][]int32{"orders": {0}}}
		ch := make(chan *sarama.ConsumerMessage)
		done := make(chan struct{})
		go func() {
			defer close(done)
			assert.NoError(t, claimHandler{b: b}.ConsumeClaim(s, fakeClaim{ch: ch}))
		}()
		require.Eventually(t, func() bool { ids.mu.Lock(); defer ids.mu.Unlock(); return ids.lookups >= 2 },
			5*time.Second, time.Millisecond, "the claim is retrying its topic's ID")
		return b, tc, ids, ch, done
	}

	t.Run("revoked", func(t *testing.T) {
		_, _, _, ch, done := claimWaiting(t)
		close(ch)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked claim did not let go")
		}
	})
	t.Run("a record arrives meanwhile", func(t *testing.T) {
		_, tc, ids, ch, done := claimWaiting(t)
		select {
		case ch <- msg(0, "a", `{}`):
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting claim did not take its record")
		}
		ids.set("id-1", 0) // the metadata can be read again
		require.Eventually(t, func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return len(tc.accepted) == 1 },
			5*time.Second, time.Millisecond, "the record read while waiting was not delivered")
		tc.mu.Lock()
		assert.Equal(t, "id-1", tc.accepted[0].TopicID)
		tc.mu.Unlock()
		close(ch)
		<-done
	})
}
