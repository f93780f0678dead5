package event

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWatermarksAdmitOncePerPartition(t *testing.T) {
	w := NewWatermarks()
	a := Position{Topic: "orders", Partition: 0, Offset: 5}
	assert.True(t, w.Admit(a))
	assert.False(t, w.Admit(a), "same record twice")
	assert.False(t, w.Admit(Position{Topic: "orders", Partition: 0, Offset: 4}), "older record of the same partition")
	assert.True(t, w.Admit(Position{Topic: "orders", Partition: 1, Offset: 4}), "other partition is independent")
	assert.True(t, w.Admit(Position{Topic: "payments", Partition: 0, Offset: 0}), "other topic is independent")
	assert.True(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 0}))
	assert.False(t, w.Covers(Position{Topic: "orders", Partition: 0, Offset: 6}))
}

func TestEnvelopeHeaderReturnsLast(t *testing.T) {
	e := Envelope{Headers: []Header{{Key: "k", Value: []byte("1")}, {Key: "k", Value: []byte("2")}}}
	v, ok := e.Header("k")
	assert.True(t, ok)
	assert.Equal(t, "2", string(v))
	_, ok = e.Header("missing")
	assert.False(t, ok)
}
