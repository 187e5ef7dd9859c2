//! A serde `Deserializer` straight over the spanned tree: no intermediate `serde_json::Value`.
//!
//! Kubernetes semantics for `null`: a null list, map or object is the same as an absent one,
//! and so is a null field of an object (the API server prunes it before validation).

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::node::{Key, Node, NodeKind};

/// A deserialization error: serde's message.
#[derive(Debug)]
pub(super) struct DeError(pub(super) String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// Deserializes one node.
pub(super) struct De<'n, 'a>(pub(super) &'n Node<'a>);

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::UInt(u) => v.visit_u64(*u),
            NodeKind::Float(f) => v.visit_f64(*f),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(Seq(items.iter())),
            NodeKind::Map(entries) => v.visit_map(Map {
                iter: entries.iter(),
                value: None,
                fields: &[],
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Null => v.visit_seq(Seq([].iter())),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Null => v.visit_map(Map {
                iter: [].iter(),
                value: None,
                fields: &[],
            }),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Map(entries) => v.visit_map(Map {
                iter: entries.iter(),
                value: None,
                fields,
            }),
            _ => self.deserialize_map(v),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Str(s) => v.visit_enum(s.as_ref().into_deserializer()),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

struct Seq<'n, 'a>(std::slice::Iter<'n, Node<'a>>);

impl<'de> SeqAccess<'de> for Seq<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(n) => seed.deserialize(De(n)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'n, 'a> {
    iter: std::slice::Iter<'n, (Key<'a>, Node<'a>)>,
    value: Option<&'n Node<'a>>,
    /// The struct's fields (empty for a plain map): the keys whose null values are dropped.
    fields: &'static [&'static str],
}

impl<'de> MapAccess<'de> for Map<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        // a known field set to null (`action:` with nothing after it, as Helm renders an
        // unset value) is dropped, as the Kubernetes API server prunes non-nullable nulls
        // before validation: the field takes its default (an unknown one is still reported)
        loop {
            match self.iter.next() {
                Some((k, v))
                    if matches!(v.kind, NodeKind::Null) && self.fields.contains(&&*k.text) =>
                {
                    continue
                }
                Some((k, v)) => {
                    self.value = Some(v);
                    return seed.deserialize(KeyDe(&k.text)).map(Some);
                }
                None => return Ok(None),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(De(v)),
            None => Err(DeError("value requested before key".to_owned())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// A mapping key: a string, parsed when a number is expected (`portLevelMtls: {8080: ...}`).
struct KeyDe<'k>(&'k str);

macro_rules! key_number {
    ($($method:ident $ty:ty => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            match self.0.parse::<$ty>() {
                Ok(n) => v.$visit(n),
                Err(_) => Err(de::Error::invalid_value(de::Unexpected::Str(self.0), &v)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_str(self.0)
    }

    key_number! {
        deserialize_u8 u8 => visit_u8,
        deserialize_u16 u16 => visit_u16,
        deserialize_u32 u32 => visit_u32,
        deserialize_u64 u64 => visit_u64,
        deserialize_i8 i8 => visit_i8,
        deserialize_i16 i16 => visit_i16,
        deserialize_i32 i32 => visit_i32,
        deserialize_i64 i64 => visit_i64
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_enum(self.0.into_deserializer())
    }

    forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    /// A field left empty (`action:`, as a Helm template renders an unset value) is dropped
    /// as the API server prunes it: the default applies. An unknown field is still an error.
    #[test]
    fn null_fields_take_their_default() {
        let loaded = crate::load::load_str(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: foo}
spec:
  action:
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: foo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}, ignoreUriCase: }]
    timeout:
    route: [{destination: {host: reviews}}]
",
            "null.yaml",
        );
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
        assert_eq!(ap.action, crate::model::AuthorizationAction::Allow);

        let loaded = crate::load::load_str(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: foo}
spec:
  hosts: [reviews]
  gatways:
",
            "unknown.yaml",
        );
        assert!(
            loaded
                .diagnostics
                .iter()
                .any(|d| d.is_error() && d.message.contains("unknown field `gatways`")),
            "{:?}",
            loaded.diagnostics
        );
    }
}
