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
