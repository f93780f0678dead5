package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// claimTopicID reads the ID of a claimed partition's topic in the
// session's generation, unless read in it already, retrying while it cannot
// be read (retryClaim): consuming under an ID read in an earlier
// generation would check a topic deleted and created again against the old
// topic's watermarks, and skip its new records.
func (b *Bridge) claimTopicID(s sarama.ConsumerGroupSession, topic string, partition int32, w *claimWait) error {
	return b.retryClaim(s, topic, partition, "the topic's ID cannot be read", w, func() (bool, error) {
		changed, err := b.topicIDs.refresh(map[string][]int32{topic: {partition}}, s.GenerationID())
		if err == nil {
			b.logChangedTopicIDs(changed)
		}
		return err == nil, err
	})
}

// retryClaim runs try, which readies a claimed partition, until it is done
// (its error then returned) or the session ends, backing off between tries:
// a partition whose start failed would stay assigned with nothing reading
// it until the next rebalance. While it fails, /readyz says what (problem)
// and why (claimFailure).
//
// w, when not nil, is the claim's messages, watched too: under cooperative
// rebalancing a revocation closes them and the session goes on, so the
// wait ends with errRevoked (it went on until sarama ended the whole
// session after Rebalance.Timeout). Records that arrive meanwhile are kept
// in w.early, to be consumed first, and the partition is paused so that
// only what sarama had buffered comes.
func (b *Bridge) retryClaim(s sarama.ConsumerGroupSession, topic string, partition int32, problem string, w *claimWait, try func() (done bool, err error)) error {
	key := fmt.Sprintf("%s/%d", topic, partition)
	defer b.claimFailures.Delete(key)
	retry := b.newBackoff()
	retry.MaxInterval = max(retry.MaxInterval, 5*time.Second)
	for {
		done, err := try()
		if done {
			return err
		}
		b.claimFailures.Store(key, problem+": "+err.Error())
		wait := retry.NextBackOff()
		b.log.Warn(problem+"; retrying before the partition is consumed", "topic", topic, "partition", partition, "err", err, "retry_in", wait)
		if werr := b.waitClaim(s, topic, partition, w, wait); werr != nil {
			if errors.Is(werr, errRevoked) {
				return werr
			}
			return fmt.Errorf("%s: %s: %w (the session ended)", key, problem, err)
		}
	}
}

// claimWait is what retryClaim watches of a claim besides its session.
type claimWait struct {
	msgs  <-chan *sarama.ConsumerMessage
	early []*sarama.ConsumerMessage // read while waiting, consumed first
}

// errRevoked ends a claim's wait when the claim is revoked.
var errRevoked = errors.New("the partition was revoked")

// waitClaim waits d, or until the session ends (an error) or w's claim is
// revoked (errRevoked), keeping what arrives meanwhile.
func (b *Bridge) waitClaim(s sarama.ConsumerGroupSession, topic string, partition int32, w *claimWait, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	var msgs <-chan *sarama.ConsumerMessage
	if w != nil {
		msgs = w.msgs
	}
	for {
		select {
		case <-s.Context().Done():
			return s.Context().Err()
		case <-t.C:
			return nil
		case m, ok := <-msgs:
			if !ok {
				return errRevoked
			}
			if len(w.early) == 0 {
				b.pressure.pauseUnregistered(topic, partition) // register sets its state once consumed
			}
			w.early = append(w.early, m)
		}
	}
}

// withEarly returns msgs with early before them, until ctx ends.
func withEarly(ctx context.Context, early []*sarama.ConsumerMessage, msgs <-chan *sarama.ConsumerMessage) <-chan *sarama.ConsumerMessage {
	if len(early) == 0 {
		return msgs
	}
	out := make(chan *sarama.ConsumerMessage)
	go func() {
		defer close(out)
		for _, m := range early {
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
