package bridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"
	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/dlq"
)

// checkTopics makes sure, before anything is read, that every route's
// topic exists (a missing one is a typo or the wrong cluster: the error
// names the route; the consumer does not ask the broker to create topics,
// see connect.SaramaConfig) and that every routed topic's DLQ topic
// exists: where brokers do not create topics on their own (the production
// default) the first poison record would stall its partition. With
// dlq.create_topics it creates the missing DLQ topics; otherwise the error
// names them.
func (b *Bridge) checkTopics(client sarama.Client) error {
	if err := client.RefreshMetadata(); err != nil {
		return fmt.Errorf("read the topics of the cluster: %w", err)
	}
	existing, err := client.Topics()
	if err != nil {
		return fmt.Errorf("read the topics of the cluster: %w", err)
	}
	// A topic the bridge's principal may not describe is left out of the
	// list as if it did not exist: ask about those by name.
	var unlisted []string
	for _, r := range b.cfg.Routes {
		unlisted = append(unlisted, r.Topic, dlq.TopicFor(r.Topic, b.cfg.DLQ.Suffix))
	}
	unlisted = slices.DeleteFunc(slices.Compact(slices.Sorted(slices.Values(unlisted))), func(t string) bool { return slices.Contains(existing, t) })
	denied := b.deniedTopics(client, unlisted)
	var absent []string
	for i, r := range b.cfg.Routes {
		if slices.Contains(existing, r.Topic) || slices.ContainsFunc(b.cfg.Routes[:i], func(o config.Route) bool { return o.Topic == r.Topic }) {
			continue
		}
		if denied[r.Topic] {
			absent = append(absent, fmt.Sprintf("routes[%d].topic %q: the bridge's principal may not describe it (grant it DESCRIBE and READ on the topic)", i, r.Topic))
		} else {
			absent = append(absent, fmt.Sprintf("routes[%d].topic %q does not exist", i, r.Topic))
		}
	}
	if len(absent) > 0 {
		return fmt.Errorf("%s in the cluster at %s: check the name, or create the topic or the ACL first", strings.Join(absent, "; "), strings.Join(b.cfg.Kafka.Brokers, ","))
	}
	var missing, refused []string
	for _, topic := range b.router.Topics() {
		if d := dlq.TopicFor(topic, b.cfg.DLQ.Suffix); denied[d] {
			refused = append(refused, fmt.Sprintf("DLQ topic %s: the bridge's principal may not describe it (grant it DESCRIBE and WRITE on the topic)", d))
		} else if !slices.Contains(existing, d) {
			missing = append(missing, d)
		}
	}
	if len(refused) > 0 {
		return errors.New(strings.Join(refused, "; "))
	}
	if len(missing) == 0 {
		return nil
	}
	if !b.cfg.DLQ.CreateTopics {
		return fmt.Errorf("the DLQ topics %s do not exist: create them (partitions 1 is enough; max.message.bytes as dlq.max_message_bytes), or set dlq.create_topics", strings.Join(missing, ", "))
	}
	admin, err := sarama.NewClusterAdminFromClient(client) // not closed: that would close the client
	if err != nil {
		return fmt.Errorf("create the DLQ topics %s: %w", strings.Join(missing, ", "), err)
	}
	for _, d := range missing {
		err := admin.CreateTopic(d, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: -1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create the DLQ topic %s (dlq.create_topics): %w", d, err)
		}
		b.log.Info("created the DLQ topic", "topic", d)
	}
	return nil
}

// deniedTopics asks the cluster about topics by name and returns those
// the bridge's principal may not describe (TOPIC_AUTHORIZATION_FAILED).
// It knows none when it cannot ask: before Kafka 0.11 a metadata request
// by name would create the topics, and a failed request only takes the
// hint from the error the caller gives.
func (b *Bridge) deniedTopics(client sarama.Client, topics []string) map[string]bool {
	version := client.Config().Version
	broker := client.LeastLoadedBroker()
	if len(topics) == 0 || !version.IsAtLeast(sarama.V0_11_0_0) || broker == nil {
		return nil
	}
	req := sarama.NewMetadataRequest(version, topics)
	req.AllowAutoTopicCreation = false
	resp, err := broker.GetMetadata(req)
	if err != nil {
		b.log.Debug("cannot ask about topics by name", "topics", topics, "err", err)
		return nil
	}
	denied := map[string]bool{}
	for _, t := range resp.Topics {
		if errors.Is(t.Err, sarama.ErrTopicAuthorizationFailed) {
			denied[t.Name] = true
		}
	}
	return denied
}
