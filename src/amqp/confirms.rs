//! Publisher confirms on one channel: each publish takes the next delivery tag as it goes
//! out, and the broker's basic.ack / basic.nack (one tag, or every tag up to it) answer
//! the publishes waiting on them. basic.return bodies wait here for the confirm that
//! follows them.

use std::collections::VecDeque;

use tokio::sync::oneshot;

/// The broker's answer to one confirmed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// basic.ack: the broker took responsibility for the message.
    Ack,
    /// basic.nack: the broker could not take it.
    Nack,
}

/// The publishes of one channel that wait for the broker's answer, in tag order.
#[derive(Debug)]
pub(super) struct Confirms {
    /// The tag the next publish gets (the broker numbers a channel's publishes from 1).
    next_tag: u64,
    /// Waiting publishes, oldest (lowest tag) first.
    pending: VecDeque<(u64, oneshot::Sender<Answer>)>,
    /// Bodies the broker returned (unroutable, mandatory) that no publish has claimed yet.
    returned: Vec<Vec<u8>>,
}

impl Default for Confirms {
    fn default() -> Self {
        Self {
            next_tag: 1,
            pending: VecDeque::new(),
            returned: Vec::new(),
        }
    }
}

impl Confirms {
    /// Gives the next publish its tag; the receiver gets the broker's answer, or is
    /// closed if the channel ends first.
    pub(super) fn expect(&mut self) -> oneshot::Receiver<Answer> {
        let (answer, waiting) = oneshot::channel();
        self.pending.push_back((self.next_tag, answer));
        self.next_tag += 1;
        waiting
    }

    /// The broker answered `tag`, or with `multiple` every tag up to and including it.
    pub(super) fn answer(&mut self, tag: u64, multiple: bool, answer: Answer) {
        if multiple {
            while self.pending.front().is_some_and(|(t, _)| *t <= tag) {
                if let Some((_, waiting)) = self.pending.pop_front() {
                    let _ = waiting.send(answer);
                }
            }
        } else if let Ok(at) = self.pending.binary_search_by_key(&tag, |(t, _)| *t) {
            if let Some((_, waiting)) = self.pending.remove(at) {
                let _ = waiting.send(answer);
            }
        }
    }

    /// The broker returned a message with this body.
    pub(super) fn returned(&mut self, body: Vec<u8>) {
        self.returned.push(body);
    }

    /// True (and forgotten) if the broker returned a message with exactly this body. The
    /// broker sends basic.return before the confirm of the same message, so a publish
    /// checks this once its answer has come.
    pub(super) fn take_return(&mut self, body: &[u8]) -> bool {
        if self.returned.is_empty() {
            return false;
        }
        match self.returned.iter().position(|b| b == body) {
            Some(at) => {
                self.returned.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// Every returned body no publish claimed (without confirms, the only way to see them).
    pub(super) fn take_all_returned(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.returned)
    }

    /// The channel ended: every waiting publish learns it has no answer coming.
    pub(super) fn abandon_all(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(waiting: &mut oneshot::Receiver<Answer>) -> Option<Answer> {
        waiting.try_recv().ok()
    }

    #[test]
    fn a_multiple_ack_answers_every_tag_up_to_it_and_no_further() {
        let mut confirms = Confirms::default();
        let mut waiting: Vec<_> = (0..5).map(|_| confirms.expect()).collect();
        confirms.answer(3, true, Answer::Ack);
        let answers: Vec<_> = waiting.iter_mut().map(answered).collect();
        assert_eq!(
            answers,
            [
                Some(Answer::Ack),
                Some(Answer::Ack),
                Some(Answer::Ack),
                None,
                None
            ]
        );
        confirms.answer(5, false, Answer::Nack);
        assert_eq!(answered(&mut waiting[4]), Some(Answer::Nack));
        assert_eq!(answered(&mut waiting[3]), None, "tag 4 still waits");
        confirms.answer(4, true, Answer::Ack);
        assert_eq!(answered(&mut waiting[3]), Some(Answer::Ack));
    }

    #[test]
    fn single_answers_may_come_out_of_order() {
        let mut confirms = Confirms::default();
        let mut waiting: Vec<_> = (0..3).map(|_| confirms.expect()).collect();
        confirms.answer(2, false, Answer::Ack);
        confirms.answer(2, false, Answer::Nack);
        assert_eq!(
            answered(&mut waiting[1]),
            Some(Answer::Ack),
            "answered once"
        );
        assert_eq!(answered(&mut waiting[0]), None);
        confirms.answer(1, false, Answer::Nack);
        confirms.answer(3, false, Answer::Ack);
        assert_eq!(answered(&mut waiting[0]), Some(Answer::Nack));
        assert_eq!(answered(&mut waiting[2]), Some(Answer::Ack));
    }

    #[test]
    fn an_ended_channel_closes_every_waiting_publish() {
        let mut confirms = Confirms::default();
        let mut waiting = confirms.expect();
        confirms.abandon_all();
        assert!(matches!(
            waiting.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn a_return_is_claimed_once_by_the_publish_with_its_body() {
        let mut confirms = Confirms::default();
        confirms.returned(b"seq 7".to_vec());
        confirms.returned(b"seq 9".to_vec());
        assert!(!confirms.take_return(b"seq 8"));
        assert!(confirms.take_return(b"seq 7"));
        assert!(!confirms.take_return(b"seq 7"), "claimed once");
        assert_eq!(confirms.take_all_returned(), vec![b"seq 9".to_vec()]);
        assert!(confirms.take_all_returned().is_empty());
    }
}
