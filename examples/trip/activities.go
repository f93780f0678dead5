package trip

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
)

// ErrSoldOut is the business failure of a booking whose offer is gone. It
// is not retryable and not dead-lettered: the saga compensates and ends.
const ErrSoldOut = "SoldOut"

// SoldOut is the offer ID the simulated services always answer ErrSoldOut to.
const SoldOut = "SOLD-OUT"

// Booking asks one service to book one offer for a trip.
type Booking struct {
	TripID string `json:"trip_id"`
	Offer  string `json:"offer"`
}

// Services simulates the flight, hotel and car rental services. Every
// exported method is an activity; register it with RegisterWith.
type Services struct {
	// World is the services' state, which tests and the demo control.
	World *World
}

// World is what the simulated services hold. A service can be broken
// (every call fails with a retryable error, as when it is down) and fixed,
// so tests and the demo can exhaust a step's retries. Safe for concurrent use.
type World struct {
	mu       sync.Mutex
	broken   map[string]bool   // service → down
	slow     map[string]bool   // service → its bookings take SlowBooking
	bookings map[string]string // reference → "service:trip:offer", while booked
	seq      int
	begun    int // slow bookings begun
	landed   int // slow bookings landed
}

// SlowBooking is how long a booking of a service made Slow takes.
const SlowBooking = 2 * time.Second

// Slow makes service's bookings take SlowBooking; such a booking lands
// even when the workflow gives up on it meanwhile, as a real service that
// does not stop when asked does.
func (s *World) Slow(service string) { s.mu.Lock(); s.slow[service] = true; s.mu.Unlock() }

// SlowBookings reports how many bookings of a Slow service have begun and
// how many have landed.
func (s *World) SlowBookings() (begun, landed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begun, s.landed
}

// NewServices returns services that are up and hold no bookings.
func NewServices() *Services {
	return &Services{World: &World{broken: map[string]bool{}, slow: map[string]bool{}, bookings: map[string]string{}}}
}

// Break makes every call to service ("flight", "hotel" or "car") fail.
func (s *World) Break(service string) { s.mu.Lock(); s.broken[service] = true; s.mu.Unlock() }

// Fix undoes Break.
func (s *World) Fix(service string) { s.mu.Lock(); delete(s.broken, service); s.mu.Unlock() }

// Booked lists the bookings that are held (booked and not cancelled).
func (s *World) Booked() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.bookings))
	for k, v := range s.bookings {
		out[k] = v
	}
	return out
}

func (s *World) book(service string, b Booking) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slow[service] && !s.broken[service] {
		s.begun++
		s.mu.Unlock()
		time.Sleep(SlowBooking) // the service does not stop when asked to
		s.mu.Lock()
		defer func() { s.landed++ }()
	}
	if s.broken[service] {
		return "", fmt.Errorf("%s service unavailable", service)
	}
	if b.Offer == SoldOut {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s offer %s is sold out", service, b.Offer), ErrSoldOut, nil)
	}
	// Idempotent per trip and service: a retried booking returns the
	// reference the first attempt made.
	for ref, what := range s.bookings {
		if what == service+":"+b.TripID+":"+b.Offer {
			return ref, nil
		}
	}
	s.seq++
	ref := fmt.Sprintf("%s-%d", service, s.seq)
	s.bookings[ref] = service + ":" + b.TripID + ":" + b.Offer
	return ref, nil
}

// cancelBooking cancels service's booking of b, by trip and offer; a
// booking that was never made, or is cancelled already, is a no-op.
func (s *World) cancelBooking(service string, b Booking) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken[service] {
		return fmt.Errorf("%s service unavailable", service)
	}
	for ref, what := range s.bookings {
		if what == service+":"+b.TripID+":"+b.Offer {
			delete(s.bookings, ref)
		}
	}
	return nil
}

func (s *World) cancel(service, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken[service] {
		return fmt.Errorf("%s service unavailable", service)
	}
	delete(s.bookings, ref) // cancelling twice is a no-op
	return nil
}

// BookFlight books a seat and returns its reference.
func (s *Services) BookFlight(_ context.Context, b Booking) (string, error) {
	return s.World.book("flight", b)
}

// BookHotel books a room and returns its reference.
func (s *Services) BookHotel(_ context.Context, b Booking) (string, error) {
	return s.World.book("hotel", b)
}

// BookCar books a car and returns its reference.
func (s *Services) BookCar(_ context.Context, b Booking) (string, error) {
	return s.World.book("car", b)
}

// CancelFlight releases a seat.
func (s *Services) CancelFlight(_ context.Context, ref string) error {
	return s.World.cancel("flight", ref)
}

// CancelHotel releases a room.
func (s *Services) CancelHotel(_ context.Context, ref string) error {
	return s.World.cancel("hotel", ref)
}

// CancelCar releases a car.
func (s *Services) CancelCar(_ context.Context, ref string) error { return s.World.cancel("car", ref) }

// CancelFlightBooking releases the seat the trip booked with b's offer, if
// any: it needs no reference, so it can be registered before the booking
// runs, whose answer may be lost after the seat was booked.
func (s *Services) CancelFlightBooking(_ context.Context, b Booking) error {
	return s.World.cancelBooking("flight", b)
}

// CancelHotelBooking releases the room the trip booked with b's offer, if any.
func (s *Services) CancelHotelBooking(_ context.Context, b Booking) error {
	return s.World.cancelBooking("hotel", b)
}

// CancelCarBooking releases the car the trip booked with b's offer, if any.
func (s *Services) CancelCarBooking(_ context.Context, b Booking) error {
	return s.World.cancelBooking("car", b)
}
