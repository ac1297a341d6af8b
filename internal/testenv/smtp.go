package testenv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/mail"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Mail is one message an SMTPServer received.
type Mail struct {
	From    string
	To      []string
	Header  mail.Header
	Body    string
	RawData []byte
}

// SMTPServer is a real SMTP server (emersion/go-smtp) on a loopback port
// that keeps what it receives. Reject makes it answer every message with a
// permanent (5xx) or temporary (4xx) error.
type SMTPServer struct {
	Addr string

	mu       sync.Mutex
	mails    []Mail
	reject   *smtp.SMTPError
	refused  map[string]*smtp.SMTPError // by recipient
	held     chan struct{}              // while open, every message waits
	arrivals int                        // messages that reached DATA, sent or not
}

// NewSMTPServer starts an SMTP server for t; it stops when t ends.
func NewSMTPServer(t testing.TB) *SMTPServer {
	t.Helper()
	s := &SMTPServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ErrorLog = nopLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Must(t, err, "listen for smtp")
	s.Addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Mails returns what the server received so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Reject makes the server refuse every message with code (e.g. 550, 451);
// 0 accepts again.
func (s *SMTPServer) Reject(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.reject = nil
		return
	}
	s.reject = &smtp.SMTPError{Code: code, Message: "refused by the test server"}
}

// RejectTo makes the server refuse every message to recipient with code,
// whatever Reject says.
func (s *SMTPServer) RejectTo(recipient string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[string]*smtp.SMTPError{}
	}
	s.refused[recipient] = &smtp.SMTPError{Code: code, Message: "refused by the test server"}
}

// Hold makes every message wait at DATA until the returned release is
// called (once).
func (s *SMTPServer) Hold() (release func()) {
	held := make(chan struct{})
	s.mu.Lock()
	s.held = held
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.held = nil
		s.mu.Unlock()
		close(held)
	}
}

// Arrivals is how many messages reached DATA, taken or refused.
func (s *SMTPServer) Arrivals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrivals
}

type smtpSession struct {
	srv  *SMTPServer
	from string
	to   []string
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	s.srv.arrivals++
	held := s.srv.held
	s.srv.mu.Unlock()
	if held != nil {
		<-held
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	for _, to := range s.to {
		if refusal := s.srv.refused[to]; refusal != nil {
			return refusal
		}
	}
	if s.srv.reject != nil {
		return s.srv.reject
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return errors.New("unparsable message")
	}
	body, _ := io.ReadAll(msg.Body)
	s.srv.mails = append(s.srv.mails, Mail{From: s.from, To: s.to, Header: msg.Header, Body: string(body), RawData: raw})
	return nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
