//! `module-agent`: the node side of powernode-modules. It makes an instance converge on its
//! template's desired state while trusting the receiver and the registry as little as
//! possible: the desired state must carry the pinned receiver key's signature, every module
//! is verified on the node with the same verifier the receiver uses, objects are addressed
//! by fs-verity digest, and the composed image must measure to the predicted digest.

pub mod apply;
pub mod cli;
pub mod fetch;
pub mod files;
pub mod gc;
pub mod generation;
pub mod mount;
pub mod objects;
pub mod pin;
pub mod receiver;
pub mod root;
pub mod switch;
pub mod system;
