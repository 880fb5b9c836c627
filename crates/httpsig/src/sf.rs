//! Structured field parsing (RFC 9651) that notes every repeated name.
//!
//! RFC 9651 resolves a dictionary member name or a parameter name that appears twice by keeping
//! the last value, and sfv's parsed types silently do so. Where a signature vouches for a value,
//! that is an ambiguity: a reader that keeps the first value (a proxy, a logger, another
//! implementation) and one that keeps the last disagree on what was signed, while the
//! re-serialized value that goes into a signature base shows only the last. The parsers here
//! build the same values as sfv's ([`Dictionary`], [`List`]) and report, per member, which
//! names came back, so that callers can refuse them.

use std::collections::BTreeMap;
use std::convert::Infallible;

use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, InnerListVisitor, ItemVisitor, ListVisitor, ParameterVisitor,
};
use sfv::{
    BareItem, BareItemFromInput, Dictionary, InnerList, Item, Key, KeyRef, List, ListEntry,
    Parameters, Parser,
};

/// The names repeated within one dictionary member or list entry (over all its instances).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Repeats {
    /// The member name appears more than once (dictionaries only).
    pub(crate) name: bool,
    /// A parameter of the member itself (of its item, or of its inner list) is named twice.
    pub(crate) params: bool,
    /// A parameter of an item inside the member's inner list is named twice.
    pub(crate) item_params: bool,
}

impl Repeats {
    /// True if some parameter name, at any depth, is repeated.
    pub(crate) fn any_param(self) -> bool {
        self.params || self.item_params
    }

    fn union(self, other: Self) -> Self {
        Self {
            name: self.name || other.name,
            params: self.params || other.params,
            item_params: self.item_params || other.item_params,
        }
    }
}

/// A dictionary as RFC 9651 parses it (the last of repeated names kept), with the names that
/// repeated.
#[derive(Debug)]
pub(crate) struct CheckedDictionary {
    pub(crate) dict: Dictionary,
    /// For every member name: what repeated within it.
    repeats: BTreeMap<Key, Repeats>,
}

impl CheckedDictionary {
    /// What repeated within the member `name` (nothing for an absent member).
    pub(crate) fn repeats_of(&self, name: &str) -> Repeats {
        self.repeats.get(name).copied().unwrap_or_default()
    }

    /// What repeated anywhere in the dictionary.
    pub(crate) fn repeats(&self) -> Repeats {
        self.repeats
            .values()
            .fold(Repeats::default(), |all, r| all.union(*r))
    }
}

/// A list as RFC 9651 parses it, with the names that repeated in any of its entries.
#[derive(Debug)]
pub(crate) struct CheckedList {
    pub(crate) list: List,
    pub(crate) repeats: Repeats,
}

/// Parses an RFC 9651 dictionary.
///
/// # Errors
///
/// sfv's error if `bytes` is not a dictionary; repeated names are not errors here, see
/// [`CheckedDictionary::repeats`].
pub(crate) fn dictionary(bytes: &[u8]) -> Result<CheckedDictionary, sfv::Error> {
    Parser::new(bytes).parse_dictionary_with_visitor(DictionaryBuilder {
        dict: Dictionary::new(),
        repeats: BTreeMap::new(),
    })
}

/// Parses an RFC 9651 list.
///
/// # Errors
///
/// sfv's error if `bytes` is not a list; repeated parameter names are not errors here, see
/// [`CheckedList::repeats`].
pub(crate) fn list(bytes: &[u8]) -> Result<CheckedList, sfv::Error> {
    Parser::new(bytes).parse_list_with_visitor(ListBuilder {
        list: List::new(),
        repeats: Repeats::default(),
    })
}

struct DictionaryBuilder {
    dict: Dictionary,
    repeats: BTreeMap<Key, Repeats>,
}

impl<'de> DictionaryVisitor<'de> for DictionaryBuilder {
    type Out = CheckedDictionary;
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        let repeats = self.repeats.entry(key.to_owned()).or_default();
        // Each entry is stored when its parameters end, before the parser reads the next name.
        repeats.name |= self.dict.contains_key(key);
        Ok(EntryBuilder {
            sink: Sink::Dictionary {
                dict: &mut self.dict,
                key: key.to_owned(),
            },
            repeats,
        })
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(CheckedDictionary {
            dict: self.dict,
            repeats: self.repeats,
        })
    }
}

struct ListBuilder {
    list: List,
    repeats: Repeats,
}

impl<'de> ListVisitor<'de> for ListBuilder {
    type Out = CheckedList;
    type Error = Infallible;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>, Self::Error> {
        Ok(EntryBuilder {
            sink: Sink::List(&mut self.list),
            repeats: &mut self.repeats,
        })
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(CheckedList {
            list: self.list,
            repeats: self.repeats,
        })
    }
}

/// Where a finished entry goes.
enum Sink<'a> {
    /// A dictionary member: replaces an earlier member of that name in its place, as RFC 9651
    /// §4.2.2 does.
    Dictionary { dict: &'a mut Dictionary, key: Key },
    /// A list entry, appended.
    List(&'a mut List),
}

impl Sink<'_> {
    fn put(self, entry: ListEntry) {
        match self {
            Self::Dictionary { dict, key } => {
                dict.insert(key, entry);
            }
            Self::List(list) => list.push(entry),
        }
    }
}

/// One dictionary member or list entry being parsed.
struct EntryBuilder<'a> {
    sink: Sink<'a>,
    repeats: &'a mut Repeats,
}

impl<'de> EntryVisitor<'de> for EntryBuilder<'_> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        let Self { sink, repeats } = self;
        Ok(ItemBuilder {
            repeated: &mut repeats.params,
            done: move |item| sink.put(ListEntry::Item(item)),
        })
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        let Self { sink, repeats } = self;
        let Repeats {
            params,
            item_params,
            ..
        } = repeats;
        Ok(InnerListBuilder {
            sink,
            items: Vec::new(),
            params_repeated: params,
            item_params_repeated: item_params,
        })
    }
}

/// An item; `done` receives it once its parameters are parsed.
struct ItemBuilder<'a, F> {
    repeated: &'a mut bool,
    done: F,
}

impl<'de, F: FnOnce(Item)> ItemVisitor<'de> for ItemBuilder<'_, F> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        let bare_item = BareItem::from(bare_item);
        let done = self.done;
        Ok(ParamsBuilder {
            params: Parameters::new(),
            repeated: self.repeated,
            done: move |params| done(Item { bare_item, params }),
        })
    }
}

/// An inner list: its items, then its own parameters.
struct InnerListBuilder<'a> {
    sink: Sink<'a>,
    items: Vec<Item>,
    params_repeated: &'a mut bool,
    item_params_repeated: &'a mut bool,
}

impl<'de> InnerListVisitor<'de> for InnerListBuilder<'_> {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        let items = &mut self.items;
        Ok(ItemBuilder {
            repeated: &mut *self.item_params_repeated,
            done: move |item| items.push(item),
        })
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
        let Self {
            sink,
            items,
            params_repeated,
            ..
        } = self;
        Ok(ParamsBuilder {
            params: Parameters::new(),
            repeated: params_repeated,
            done: move |params| {
                sink.put(ListEntry::InnerList(InnerList::with_params(items, params)));
            },
        })
    }
}

/// Parameters, noting a name that comes back; `done` receives them (the last value of a
/// repeated name, in the place of its first) at the end.
struct ParamsBuilder<'a, F> {
    params: Parameters,
    repeated: &'a mut bool,
    done: F,
}

impl<'de, F: FnOnce(Parameters)> ParameterVisitor<'de> for ParamsBuilder<'_, F> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        *self.repeated |= self.params.contains_key(key);
        self.params.insert(key.to_owned(), value.into());
        Ok(())
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        (self.done)(self.params);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
