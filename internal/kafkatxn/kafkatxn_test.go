package kafkatxn

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
)

func TestFencingIsVisibleThroughProducerErrors(t *testing.T) {
	sendErr := sarama.ProducerErrors{{Err: sarama.ErrOutOfBrokers}, {Err: sarama.ErrInvalidProducerEpoch}}
	assert.False(t, Fenced(sendErr), "sarama's ProducerErrors hide their causes")
	assert.True(t, Fenced(fmt.Errorf("send: %w", SendErrors(sendErr))))
	assert.ErrorIs(t, SendErrors(sendErr), sarama.ErrOutOfBrokers)
	assert.Equal(t, sarama.ErrOutOfBrokers, SendErrors(sarama.ErrOutOfBrokers), "other errors pass through")
	assert.True(t, StaleMember(fmt.Errorf("offsets: %w", sarama.ErrUnknownMemberId)))
	assert.False(t, StaleMember(sarama.ErrProducerFenced))
	assert.False(t, Fenced(sarama.ErrIllegalGeneration))
}

func TestTransactionalIDBelongsToThePartition(t *testing.T) {
	assert.Equal(t, "enrich-g-orders-3", TransactionalID("enrich", "g", "orders", 3))
	assert.NotEqual(t, TransactionalID("p", "g", "t", 1), TransactionalID("p", "g", "t", 2))
}

// A batch whose records all failed alike says so once, with the count:
// 1,000 records failing with NOT_ENOUGH_REPLICAS made an error of 89,020
// bytes on 1,000 lines, logged at every retry of a commit.
func TestSendErrorsNameEachCauseOnce(t *testing.T) {
	var pes sarama.ProducerErrors
	for i := range 1000 {
		cause := sarama.ErrNotEnoughReplicas
		if i == 7 {
			cause = sarama.ErrMessageSizeTooLarge
		}
		pes = append(pes, &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: "t"}, Err: cause})
	}
	err := SendErrors(pes)
	assert.ErrorIs(t, err, sarama.ErrNotEnoughReplicas)
	assert.ErrorIs(t, err, sarama.ErrMessageSizeTooLarge)
	assert.Less(t, len(err.Error()), 400)
	assert.Contains(t, err.Error(), "1000 records failed")
	assert.Contains(t, err.Error(), "999 records: "+sarama.ErrNotEnoughReplicas.Error())
}
