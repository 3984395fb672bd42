//! An HTTP method, reduced to the set pulse names in metrics, spans and logs.

use hyper::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    /// Any extension method: one label value, however many a client invents.
    Other,
}

impl Verb {
    /// How many variants there are, for tables indexed by `verb as usize`.
    pub const COUNT: usize = Verb::Other as usize + 1;

    /// Every variant, in order.
    pub const ALL: [Verb; Verb::COUNT] = [
        Verb::Get,
        Verb::Head,
        Verb::Post,
        Verb::Put,
        Verb::Delete,
        Verb::Patch,
        Verb::Options,
        Verb::Connect,
        Verb::Trace,
        Verb::Other,
    ];

    pub fn from_method(method: &Method) -> Verb {
        match *method {
            Method::GET => Verb::Get,
            Method::HEAD => Verb::Head,
            Method::POST => Verb::Post,
            Method::PUT => Verb::Put,
            Method::DELETE => Verb::Delete,
            Method::PATCH => Verb::Patch,
            Method::OPTIONS => Verb::Options,
            Method::CONNECT => Verb::Connect,
            Method::TRACE => Verb::Trace,
            _ => Verb::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
            Verb::Patch => "PATCH",
            Verb::Options => "OPTIONS",
            Verb::Connect => "CONNECT",
            Verb::Trace => "TRACE",
            Verb::Other => "other",
        }
    }

    /// This verb as a bit of a [`Verbs`] set.
    pub const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of verbs: the methods a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbs(pub u16);

impl Verbs {
    pub const fn contains(self, verb: Verb) -> bool {
        self.0 & verb.bit() != 0
    }

    /// The verbs in the order of [`Verb`]'s variants.
    pub fn iter(self) -> impl Iterator<Item = Verb> {
        Verb::ALL
            .into_iter()
            .filter(move |verb| self.contains(*verb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(
            Verb::from_method(&Method::from_bytes(b"BREW").unwrap()),
            Verb::Other
        );
        assert_eq!(Verb::Other.label(), "other");
        assert_eq!(Verb::from_method(&Method::OPTIONS), Verb::Options);
    }

    #[test]
    fn a_set_holds_what_was_put_in_it() {
        let set = Verbs(Verb::Get.bit() | Verb::Delete.bit());
        assert!(set.contains(Verb::Get) && set.contains(Verb::Delete));
        assert!(!set.contains(Verb::Head) && !set.contains(Verb::Other));
        assert_eq!(set.iter().collect::<Vec<_>>(), [Verb::Get, Verb::Delete]);
    }
}
