//! The words of the pages in the languages other than English, keyed by the English text.
//!
//! Templates write `{{ t("Sign in") }}` (and `{{ t(title) }}`, `{{ t(message) }}`… for the texts
//! the handlers pass): [`translate`] gives the text in the page's language, or the English one
//! when the catalogue has none (a value the person typed, an error worded by the service's
//! domain). A unit test checks that every `t("…")` of every template has its French.

use std::collections::HashMap;
use std::sync::LazyLock;

use idstream_app::Lang;

/// English → French.
const FRENCH: &[(&str, &str)] = &[
    // OpenID Connect: consent and logout.
    (
        "An application asks to sign you in:",
        "Une application demande à vous connecter :",
    ),
    ("It would receive:", "Elle recevrait :"),
    (
        "Who you are (your account's identifier in this organisation)",
        "Qui vous êtes (l’identifiant de votre compte dans cette organisation)",
    ),
    ("Your name and picture", "Votre nom et votre photo"),
    (
        "Your email address and whether it is verified",
        "Votre adresse e-mail et si elle est vérifiée",
    ),
    (
        "Access while you are away, until you take it back",
        "Un accès en votre absence, jusqu’à ce que vous le retiriez",
    ),
    ("Allow", "Autoriser"),
    ("Deny", "Refuser"),
    (
        "You can take this back at any time from your account.",
        "Vous pouvez le retirer à tout moment depuis votre compte.",
    ),
    (
        "An application asks to sign you out:",
        "Une application demande à vous déconnecter :",
    ),
    (
        "Sign out of this browser, and of the applications you signed in to with it?",
        "Vous déconnecter de ce navigateur et des applications auxquelles vous vous êtes connecté avec lui ?",
    ),
    ("Allow access", "Autoriser l’accès"),
    ("Signed out", "Déconnecté"),
    ("You are signed out.", "Vous êtes déconnecté."),
    (
        "The application's sign-in request is not valid. Tell the application's developers:",
        "La demande de connexion de l’application n’est pas valide. Signalez-le à ses développeurs :",
    ),
    // Words of the templates.
    ("(current)", "(actuelle)"),
    (
        "(international form, +44 20 7946 0958)",
        "(forme internationale, +33 1 23 45 67 89)",
    ),
    ("(not verified yet)", "(pas encore vérifiée)"),
    (
        "(separated by spaces or commas; none: all of yours)",
        "(séparées par des espaces ou des virgules ; aucune : toutes les vôtres)",
    ),
    ("(this one)", "(celle-ci)"),
    // The console's records, trail and time travel.
    ("About", "Concerne"),
    (
        "About (email address or id)",
        "Concerne (adresse e-mail ou identifiant)",
    ),
    ("Access", "Accès"),
    ("Menu", "Menu"),
    ("Save the menu", "Enregistrer le menu"),
    (
        "The role's menu, as the API writes it (a JSON list of items with id, label, href, icon, permission and children; [] removes it)",
        "Le menu du rôle, tel que l’API l’écrit (une liste JSON d’éléments avec id, label, href, icon, permission et children ; [] le retire)",
    ),
    ("Apply", "Appliquer"),
    ("Tick", "Cocher"),
    ("With the people ticked", "Avec les personnes cochées"),
    (
        "Owners and administrators sign in with a passkey",
        "Propriétaires et administrateurs se connectent avec une clé d’accès",
    ),
    ("Ends", "Fin"),
    ("Give a role", "Donner un rôle"),
    ("How", "Comment"),
    ("Last active", "Dernière activité"),
    ("Roles here", "Rôles ici"),
    ("Their API keys here", "Leurs clés d’API ici"),
    ("Their live sessions", "Leurs sessions ouvertes"),
    ("none", "aucun"),
    ("revoked", "révoquée"),
    ("Access of", "Accès de"),
    ("Behind the log", "Retard sur le journal"),
    ("Compute the digests", "Calculer les empreintes"),
    (
        "reads every read model: slow for a large organisation",
        "lit chaque modèle de lecture : lent pour une grande organisation",
    ),
    // The platform screen's chain verification.
    ("Tamper evidence", "Preuve d’intégrité"),
    (
        "The log does not match its chain",
        "Le journal ne correspond pas à sa chaîne",
    ),
    ("first break at position", "première rupture à la position"),
    ("The log could not be read", "Le journal n’a pas pu être lu"),
    ("Verifying…", "Vérification en cours…"),
    (
        "The log matches its chain",
        "Le journal correspond à sa chaîne",
    ),
    ("Events verified", "Événements vérifiés"),
    ("Checkpoints", "Points de contrôle"),
    ("the last at", "le dernier à"),
    ("signed by key", "signé par la clé"),
    ("covering up to", "couvrant jusqu’à"),
    (
        "Not yet covered by a checkpoint",
        "Pas encore couverts par un point de contrôle",
    ),
    ("Last checked", "Dernière vérification"),
    (
        "Verified from the first event since",
        "Vérifié depuis le premier événement le",
    ),
    (
        "again every hour; each visit verifies what was appended since the last",
        "à nouveau toutes les heures ; chaque visite vérifie ce qui a été ajouté depuis la précédente",
    ),
    ("Digest", "Empreinte"),
    (
        "Everyone, by name, address or id",
        "Tout le monde, par nom, adresse ou identifiant",
    ),
    ("Id", "Identifiant"),
    ("Organisations", "Organisations"),
    (
        "People of every organisation",
        "Les personnes de toutes les organisations",
    ),
    ("Platform", "Plateforme"),
    ("Position", "Position"),
    ("Read model", "Modèle de lecture"),
    ("Read models", "Modèles de lecture"),
    ("Record grants", "Accès à des enregistrements"),
    ("Records owned", "Enregistrements possédés"),
    ("in each organisation", "dans chaque organisation"),
    ("the log at", "le journal à"),
    (
        "(refused while anyone holds it or while it is the default role)",
        "(refusé tant que quelqu’un le détient ou qu’il est le rôle par défaut)",
    ),
    ("Define a role", "Définir un rôle"),
    ("Define the role", "Définir le rôle"),
    ("Delete this role", "Supprimer ce rôle"),
    (
        "Give a role on this record only",
        "Donner un rôle sur cet enregistrement seulement",
    ),
    ("Give the local role", "Donner le rôle local"),
    (
        "Name (lower-case letters, digits, dots, dashes)",
        "Nom (minuscules, chiffres, points, tirets)",
    ),
    ("Take local role", "Retirer le rôle local"),
    ("Take the local role", "Retirer le rôle local"),
    ("from", "à"),
    ("Access review", "Revue des accès"),
    (
        "At (a time in UTC, 2026-12-05T14:30:00, or a log position; blank: now)",
        "Au (une heure UTC, 2026-12-05T14:30:00, ou une position du journal ; vide : maintenant)",
    ),
    ("Custom permissions", "Permissions particulières"),
    ("Download as CSV", "Télécharger en CSV"),
    ("Nobody holds anything.", "Personne ne détient rien."),
    ("Who holds what", "Qui détient quoi"),
    (
        "Back to the role, without saving",
        "Retour au rôle, sans enregistrer",
    ),
    (
        "Nobody's access would change.",
        "L’accès de personne ne changerait.",
    ),
    ("Preview the change", "Prévoir l’effet du changement"),
    ("What this change would do", "Ce que ferait ce changement"),
    (
        "Whose access would change if role",
        "Dont l’accès changerait si le rôle",
    ),
    ("Would gain", "Gagnerait"),
    ("Would lose", "Perdrait"),
    ("were saved so", "était enregistré ainsi"),
    (
        "Fields each role may not see or not search (system fields are always shown)",
        "Champs qu’un rôle ne voit pas ou ne peut pas rechercher (les champs système sont toujours montrés)",
    ),
    (
        "Fields, besides the system fields",
        "Champs, en plus des champs système",
    ),
    ("Hidden", "Masqués"),
    ("Not searchable", "Non recherchables"),
    ("Register", "Enregistrer"),
    ("Register an entity", "Enregistrer une entité"),
    (
        "Row-level security: a record is private unless something opens it",
        "Sécurité au niveau des lignes : un enregistrement est privé sauf si quelque chose l’ouvre",
    ),
    ("Save the entity", "Enregistrer l’entité"),
    (
        "Save the field rules of",
        "Enregistrer les règles de champs de",
    ),
    (
        "Who may, beyond the permission matrix: roles, or _EVERYONE, _AUTHENTICATED_USER, _CREATOR (the record's owner), separated by commas.",
        "Qui peut, au-delà de la matrice des permissions : des rôles, ou _EVERYONE, _AUTHENTICATED_USER, _CREATOR (le propriétaire de l’enregistrement), séparés par des virgules.",
    ),
    ("hide", "masquer"),
    ("no search on", "pas de recherche sur"),
    ("system field", "champ système"),
    ("A digit", "Un chiffre"),
    ("A lower-case letter", "Une minuscule"),
    (
        "A session ends after this many idle minutes",
        "Une session prend fin après tant de minutes d’inactivité",
    ),
    (
        "A session ends this many hours after sign-in",
        "Une session prend fin tant d’heures après la connexion",
    ),
    (
        "A sign-in link or code lasts (minutes)",
        "Un lien ou un code de connexion dure (minutes)",
    ),
    ("A symbol", "Un symbole"),
    (
        "An invitation lasts (hours)",
        "Une invitation dure (heures)",
    ),
    ("An upper-case letter", "Une majuscule"),
    ("Branding", "Image de marque"),
    ("Colour (#rrggbb)", "Couleur (#rrvvbb)"),
    (
        "Everyone uses a second factor",
        "Tout le monde utilise un second facteur",
    ),
    ("Joining", "Arrivée"),
    ("Language of mails", "Langue des e-mails"),
    ("Logo address (https)", "Adresse du logo (https)"),
    ("Longest password", "Mot de passe le plus long"),
    ("Passwords and factors", "Mots de passe et facteurs"),
    (
        "People created by an administrator verify their address too",
        "Les personnes créées par un administrateur vérifient aussi leur adresse",
    ),
    ("People may sign themselves up", "Chacun peut s’inscrire"),
    (
        "Refuse common passwords",
        "Refuser les mots de passe courants",
    ),
    (
        "Remember me lasts (days; 0: off)",
        "« Se souvenir de moi » dure (jours ; 0 : désactivé)",
    ),
    (
        "Role of people who sign themselves up",
        "Rôle des personnes qui s’inscrivent",
    ),
    ("Save the settings", "Enregistrer les réglages"),
    ("Settings", "Réglages"),
    ("Sessions and links", "Sessions et liens"),
    ("Shortest password", "Mot de passe le plus court"),
    (
        "They verify their address before signing in",
        "Elles vérifient leur adresse avant de se connecter",
    ),
    (
        "You may read these settings but not change them.",
        "Vous pouvez lire ces réglages mais pas les modifier.",
    ),
    ("Action", "Action"),
    ("As of", "Au"),
    (
        "At (a time in UTC, 2026-12-05T14:30:00, or a log position)",
        "Au (une heure UTC, 2026-12-05T14:30:00, ou une position du journal)",
    ),
    ("Audit trail", "Journal d’audit"),
    (
        "By (email address or id)",
        "Par (adresse e-mail ou identifiant)",
    ),
    ("Compared with (optional)", "Comparé avec (facultatif)"),
    ("Console", "Console"),
    ("Email address or id", "Adresse e-mail ou identifiant"),
    ("Entity", "Entité"),
    ("Event type", "Type d’événement"),
    ("Fields", "Champs"),
    ("Grant", "Accorder"),
    ("Grant access", "Accorder un accès"),
    (
        "Last day (blank: for good)",
        "Dernier jour (vide : sans fin)",
    ),
    ("Local roles", "Rôles locaux"),
    (
        "Nobody holds a grant or a local role on it.",
        "Personne n’y a d’accès accordé ni de rôle local.",
    ),
    ("Nobody.", "Personne."),
    ("Nothing matches.", "Rien ne correspond."),
    ("Open the record", "Ouvrir l’enregistrement"),
    ("Owner", "Propriétaire"),
    ("Permission", "Permission"),
    ("Previous page", "Page précédente"),
    ("First page", "Première page"),
    (
        "A hundred people per page, in the order of their ids.",
        "Cent personnes par page, dans l’ordre de leurs identifiants.",
    ),
    ("Record", "Enregistrement"),
    ("Records", "Enregistrements"),
    ("Revoke the grant of", "Retirer l’accès de"),
    ("Row-level security", "Sécurité au niveau des lignes"),
    ("Show", "Afficher"),
    ("Since", "Depuis"),
    (
        "The organisation's entities",
        "Les entités de l’organisation",
    ),
    (
        "This page stopped early to answer quickly; the next page goes on.",
        "Cette page s’est arrêtée tôt pour répondre vite ; la page suivante continue.",
    ),
    ("Time travel", "Voyage dans le temps"),
    ("To", "Au"),
    (
        "What happened in the organisation",
        "Ce qui s’est passé dans l’organisation",
    ),
    ("Who could", "Qui pouvait"),
    (
        "Who could read it, and when",
        "Qui pouvait le lire, et quand",
    ),
    (
        "Who holds access to this record",
        "Qui a accès à cet enregistrement",
    ),
    ("Why", "Pourquoi"),
    ("access before and after", "accès avant et après"),
    ("decided at", "décidé au"),
    ("newest first", "les plus récents d’abord"),
    ("nobody", "personne"),
    ("oldest first", "les plus anciens d’abord"),
    ("read and write", "lecture et écriture"),
    ("read only", "lecture seule"),
    ("since", "depuis"),
    ("until", "jusqu’au"),
    ("API keys", "Clés d’API"),
    ("As your browser asks", "Celle que demande votre navigateur"),
    ("Back to your account", "Retour à votre compte"),
    ("Change organisation", "Changer d’organisation"),
    ("Change the password", "Changer le mot de passe"),
    ("Change your email address", "Changer votre adresse e-mail"),
    ("Change your password", "Changer votre mot de passe"),
    ("Code from the app", "Code de l’application"),
    ("Code from the email", "Code reçu par e-mail"),
    (
        "Code from your authenticator app, or a recovery code",
        "Code de votre application d’authentification, ou un code de secours",
    ),
    ("Continue", "Continuer"),
    ("Create the account", "Créer le compte"),
    ("Create the key", "Créer la clé"),
    ("Current password", "Mot de passe actuel"),
    ("Device", "Appareil"),
    ("Edit your profile", "Modifier votre profil"),
    ("Email address", "Adresse e-mail"),
    ("Email me a code", "M’envoyer un code"),
    ("Email me a link", "M’envoyer un lien"),
    ("First name", "Prénom"),
    ("From", "Depuis"),
    ("I have an account", "J’ai déjà un compte"),
    (
        "If this address has an account, a six-digit code is on its way. Enter it here; it works once, for a few minutes.",
        "Si cette adresse a un compte, un code à six chiffres est en route. Saisissez-le ici ; il ne sert qu’une fois, pendant quelques minutes.",
    ),
    ("Key:", "Clé :"),
    (
        "Your language (emails and pages)",
        "Votre langue (e-mails et pages)",
    ),
    ("Last name", "Nom"),
    ("Last used", "Dernière utilisation"),
    (
        "Limit it to these permissions",
        "La limiter à ces permissions",
    ),
    ("Limited to", "Limitée à"),
    ("Name of a new key", "Nom d’une nouvelle clé"),
    ("Name", "Nom"),
    ("New email address", "Nouvelle adresse e-mail"),
    ("New password", "Nouveau mot de passe"),
    (
        "Or sign in with your email alone",
        "Ou connectez-vous avec votre seule adresse e-mail",
    ),
    ("Organisation", "Organisation"),
    ("Password", "Mot de passe"),
    ("Phone", "Téléphone"),
    (
        "QR code of your two-factor set-up key",
        "QR code de votre clé de double authentification",
    ),
    (
        "Remember me on this device",
        "Se souvenir de moi sur cet appareil",
    ),
    ("Revoke the key", "Révoquer la clé"),
    ("Revoke", "Révoquer"),
    ("Roles", "Rôles"),
    ("Save", "Enregistrer"),
    (
        "Scan this code with an authenticator app, or enter the key below, then type the six-digit code it shows.",
        "Scannez ce code avec une application d’authentification, ou saisissez la clé ci-dessous, puis tapez le code à six chiffres qu’elle affiche.",
    ),
    ("Send the link", "Envoyer le lien"),
    ("Sessions and devices", "Sessions et appareils"),
    ("Sign in", "Se connecter"),
    (
        "Sign out the session started",
        "Fermer la session ouverte le",
    ),
    ("Sign out", "Se déconnecter"),
    ("Started", "Ouverte le"),
    (
        "The same new password again",
        "Le même nouveau mot de passe, à nouveau",
    ),
    ("The same password again", "Le même mot de passe, à nouveau"),
    (
        "Turn two-factor sign-in off",
        "Désactiver la double authentification",
    ),
    (
        "Turn two-factor sign-in on",
        "Activer la double authentification",
    ),
    (
        "Two-factor sign-in is on. Keep these recovery codes somewhere safe: each signs you in once if you lose your app. They are shown only now.",
        "La double authentification est activée. Gardez ces codes de secours en lieu sûr : chacun vous connecte une fois si vous perdez votre application. Ils ne sont affichés que maintenant.",
    ),
    (
        "Two-factor sign-in is on.",
        "La double authentification est activée.",
    ),
    ("Two-factor sign-in", "Double authentification"),
    (
        "We send a link to the new address; it takes over once you follow the link, and the current one is told.",
        "Nous envoyons un lien à la nouvelle adresse ; elle prend le relais dès que vous suivez le lien, et l’adresse actuelle en est avertie.",
    ),
    ("Where you are signed in", "Où vous êtes connecté"),
    (
        "You belong to several organisations. Choose the one to work in; you can change it later from your account.",
        "Vous faites partie de plusieurs organisations. Choisissez celle où travailler ; vous pourrez en changer depuis votre compte.",
    ),
    ("Your API keys in", "Vos clés d’API dans"),
    ("Your account", "Votre compte"),
    ("Your address now:", "Votre adresse actuelle :"),
    (
        "Your new key, shown only now: copy it somewhere safe.",
        "Votre nouvelle clé, affichée seulement maintenant : copiez-la en lieu sûr.",
    ),
    ("Your password", "Votre mot de passe"),
    (
        "Your password, to turn it off",
        "Votre mot de passe, pour la désactiver",
    ),
    ("off", "désactivée"),
    ("on", "activée"),
    ("everything you may do", "tout ce que vous pouvez faire"),
    ("never", "jamais"),
    (
        "Name, email address or id",
        "Nom, adresse e-mail ou identifiant",
    ),
    ("Status", "Statut"),
    ("Order", "Ordre"),
    ("Search", "Rechercher"),
    ("people", "personnes"),
    ("at least", "au moins"),
    ("Created", "Créé le"),
    ("Last sign-in", "Dernière connexion"),
    ("Next page", "Page suivante"),
    ("Invite someone", "Inviter quelqu’un"),
    ("The organisation's roles", "Les rôles de l’organisation"),
    ("Role", "Rôle"),
    ("Description", "Description"),
    ("Holders", "Titulaires"),
    ("Global access", "Accès global"),
    ("(built in)", "(intégré)"),
    ("yes", "oui"),
    ("no", "non"),
    ("Permissions", "Permissions"),
    ("Resource", "Ressource"),
    ("read", "lire"),
    ("create", "créer"),
    ("update", "modifier"),
    ("delete", "supprimer"),
    ("given", "accordée"),
    ("not given", "non accordée"),
    ("Also:", "Aussi :"),
    ("Take the role from", "Retirer le rôle à"),
    ("Take the role", "Retirer le rôle"),
    (
        "Give the role to (email addresses or ids, separated by spaces or commas)",
        "Donner le rôle à (adresses e-mail ou identifiants, séparés par des espaces ou des virgules)",
    ),
    ("Give the role", "Donner le rôle"),
    (
        "Global access (every permission, past row- and field-level security)",
        "Accès global (toutes les permissions, au-delà de la sécurité par ligne et par champ)",
    ),
    ("Save the permissions", "Enregistrer les permissions"),
    (
        "Erasing this person destroys their personal data for good, in every organisation they belong to: their name, addresses, phone and attributes become unreadable everywhere they are kept, and they can never sign in again. The trail of what happened stays, naming them by id only. This cannot be undone.",
        "Effacer cette personne détruit ses données personnelles pour de bon, dans toutes ses organisations : son nom, ses adresses, son téléphone et ses attributs deviennent illisibles partout où ils sont gardés, et elle ne pourra plus jamais se connecter. La trace de ce qui s’est passé reste, ne la nommant que par son identifiant. C’est irréversible.",
    ),
    (
        "Type their email address to confirm",
        "Tapez son adresse e-mail pour confirmer",
    ),
    ("Erase for good", "Effacer pour de bon"),
    (
        "Suspended until (blank: until reinstated)",
        "Suspendu jusqu’au (vide : jusqu’à rétablissement)",
    ),
    ("Reason (kept in the trail)", "Motif (gardé dans la trace)"),
    ("Back", "Retour"),
    ("Erase this person", "Effacer cette personne"),
    (
        "The address typed is not this person's: nothing was erased.",
        "L’adresse tapée n’est pas celle de cette personne : rien n’a été effacé.",
    ),
    (
        "What happened to them lately",
        "Ce qui lui est arrivé récemment",
    ),
    ("When", "Quand"),
    ("What", "Quoi"),
    ("By", "Par"),
    (
        "Role (blank: the organisation's default)",
        "Rôle (vide : celui par défaut de l’organisation)",
    ),
    ("Send", "Envoyer"),
    ("by email", "par e-mail"),
    ("as a link to pass on", "sous forme de lien à transmettre"),
    ("Invite", "Inviter"),
    // Titles, messages and errors the handlers pass.
    ("People", "Personnes"),
    ("Person", "Personne"),
    ("Suspend", "Suspendre"),
    ("Reinstate", "Rétablir"),
    ("Deactivate", "Désactiver"),
    ("Reactivate", "Réactiver"),
    ("End their sessions", "Mettre fin à ses sessions"),
    ("Lift a lock-out", "Lever un blocage"),
    (
        "Reset their second factors",
        "Réinitialiser ses seconds facteurs",
    ),
    ("There is no such role.", "Ce rôle n’existe pas."),
    (
        "Pass this link on to the person invited; it is shown only now.",
        "Transmettez ce lien à la personne invitée ; il n’est affiché que maintenant.",
    ),
    (
        "The invitation is on its way.",
        "L’invitation est en route.",
    ),
    (
        "The invitation is recorded, but its mail could not be sent yet.",
        "L’invitation est enregistrée, mais son e-mail n’a pas encore pu partir.",
    ),
    ("Any status", "Tous les statuts"),
    ("Active", "Actif"),
    ("Invited", "Invité"),
    ("Suspended", "Suspendu"),
    ("Inactive", "Inactif"),
    ("Erased", "Effacé"),
    ("Newest first", "Les plus récents d’abord"),
    ("Oldest first", "Les plus anciens d’abord"),
    ("Latest sign-in first", "Dernière connexion d’abord"),
    ("This form has expired", "Ce formulaire a expiré"),
    (
        "The form could not be accepted: it has expired or did not come from this page. Open the page again and retry.",
        "Le formulaire n’a pas pu être accepté : il a expiré ou ne vient pas de cette page. Rouvrez la page et réessayez.",
    ),
    (
        "Too many attempts from here. Wait a minute and try again.",
        "Trop de tentatives depuis cet endroit. Attendez une minute et réessayez.",
    ),
    (
        "The service cannot complete this right now. Try again in a moment.",
        "Le service ne peut pas terminer cette opération pour l’instant. Réessayez dans un moment.",
    ),
    (
        "Something went wrong on our side.",
        "Un problème est survenu de notre côté.",
    ),
    (
        "The email address or password is wrong.",
        "L’adresse e-mail ou le mot de passe est incorrect.",
    ),
    (
        "You cannot sign in to that organisation with this account.",
        "Vous ne pouvez pas vous connecter à cette organisation avec ce compte.",
    ),
    (
        "The code is wrong or was used already: enter the next code of your authenticator app, or a recovery code.",
        "Le code est incorrect ou a déjà servi : saisissez le code suivant de votre application d’authentification, ou un code de secours.",
    ),
    ("Your organisation", "Votre organisation"),
    ("Choose an organisation", "Choisissez une organisation"),
    (
        "You are not a member of that organisation.",
        "Vous n’êtes pas membre de cette organisation.",
    ),
    (
        "That code did not match. Here is a new key: scan it again and enter the code it shows.",
        "Ce code ne correspond pas. Voici une nouvelle clé : scannez-la et saisissez le code qu’elle affiche.",
    ),
    ("Your sessions", "Vos sessions"),
    (
        "The two new passwords differ.",
        "Les deux nouveaux mots de passe diffèrent.",
    ),
    (
        "Your password was changed. Your other sessions were ended.",
        "Votre mot de passe a été changé. Vos autres sessions ont été fermées.",
    ),
    (
        "The current password is wrong.",
        "Le mot de passe actuel est incorrect.",
    ),
    ("Create an account", "Créer un compte"),
    (
        "Sign up through your organisation's link (it names the organisation).",
        "Inscrivez-vous par le lien de votre organisation (il la désigne).",
    ),
    (
        "The two passwords differ.",
        "Les deux mots de passe diffèrent.",
    ),
    (
        "Sign-up is not open here. Ask your organisation for an invitation.",
        "L’inscription n’est pas ouverte ici. Demandez une invitation à votre organisation.",
    ),
    (
        "Thank you. Check your mail: when the organisation asks for it, follow the link we sent to confirm your address, then sign in.",
        "Merci. Consultez vos e-mails : si l’organisation le demande, suivez le lien envoyé pour confirmer votre adresse, puis connectez-vous.",
    ),
    ("Check your mail", "Consultez vos e-mails"),
    (
        "If this address has an account, a sign-in link is on its way. It works once, for a few minutes.",
        "Si cette adresse a un compte, un lien de connexion est en route. Il ne sert qu’une fois, pendant quelques minutes.",
    ),
    (
        "Check the new address: follow the link we sent there to start using it.",
        "Consultez la nouvelle adresse : suivez le lien que nous y avons envoyé pour commencer à l’utiliser.",
    ),
    ("The password is wrong.", "Le mot de passe est incorrect."),
    ("Sign in with a code", "Se connecter avec un code"),
    (
        "The code is wrong or has expired. Ask for a new one if it keeps failing.",
        "Le code est incorrect ou a expiré. Demandez-en un nouveau si l’échec se répète.",
    ),
    ("Your profile", "Votre profil"),
    (
        "This page opens from the link in your email. Open the link again; if it has expired, ask for a new one.",
        "Cette page s’ouvre depuis le lien de votre e-mail. Rouvrez le lien ; s’il a expiré, demandez-en un nouveau.",
    ),
    ("Accept the invitation", "Accepter l’invitation"),
    (
        "Choose a password for your account. (If you have one already, enter it here.)",
        "Choisissez un mot de passe pour votre compte. (Si vous en avez déjà un, saisissez-le ici.)",
    ),
    ("Accept and sign in", "Accepter et se connecter"),
    (
        "Choose a password for your account.",
        "Choisissez un mot de passe pour votre compte.",
    ),
    (
        "Choose a new password",
        "Choisissez un nouveau mot de passe",
    ),
    (
        "Your password was changed, and every session of your account was ended.",
        "Votre mot de passe a été changé, et toutes les sessions de votre compte ont été fermées.",
    ),
    ("Verify your email address", "Vérifiez votre adresse e-mail"),
    (
        "Confirm that this address is yours.",
        "Confirmez que cette adresse est bien la vôtre.",
    ),
    ("Verify my address", "Vérifier mon adresse"),
    (
        "Your email address is verified.",
        "Votre adresse e-mail est vérifiée.",
    ),
    (
        "Confirm your new email address",
        "Confirmez votre nouvelle adresse e-mail",
    ),
    (
        "Confirm that your account should use this address from now on.",
        "Confirmez que votre compte doit utiliser cette adresse désormais.",
    ),
    ("Use this address", "Utiliser cette adresse"),
    (
        "Your account uses the new address from now on.",
        "Votre compte utilise désormais la nouvelle adresse.",
    ),
    ("Sign in with your link", "Se connecter avec votre lien"),
    ("Sign in on this device?", "Se connecter sur cet appareil ?"),
    // Refusals of the service the pages show as they are worded.
    (
        "this email address belongs to another user",
        "cette adresse e-mail appartient à un autre utilisateur",
    ),
    (
        "the email address is not valid",
        "l’adresse e-mail n’est pas valide",
    ),
    ("the language is one of en, fr", "la langue est en ou fr"),
    // Passkeys.
    ("Passkeys", "Clés d’accès"),
    (
        "A passkey signs you in with your device's screen lock or a security key, without a password, and cannot be used on another site.",
        "Une clé d’accès vous connecte avec le verrouillage de votre appareil ou une clé de sécurité, sans mot de passe, et ne peut pas servir sur un autre site.",
    ),
    (
        "Your passkey is your second factor now. Keep these recovery codes somewhere safe: each signs you in once if you lose your passkeys. They are shown only now.",
        "Votre clé d’accès est maintenant votre second facteur. Gardez ces codes de secours en lieu sûr : chacun vous connecte une fois si vous perdez vos clés d’accès. Ils ne sont montrés que maintenant.",
    ),
    ("Added", "Ajoutée"),
    (
        "Passkeys are unavailable here: the service's public address needs a host name.",
        "Les clés d’accès ne sont pas disponibles ici : l’adresse publique du service doit avoir un nom d’hôte.",
    ),
    ("Remove", "Retirer"),
    ("Laptop", "Ordinateur portable"),
    (
        "You have no passkey yet.",
        "Vous n’avez pas encore de clé d’accès.",
    ),
    ("Name of the new passkey", "Nom de la nouvelle clé d’accès"),
    (
        "The passkey could not be added.",
        "La clé d’accès n’a pas pu être ajoutée.",
    ),
    ("Add a passkey", "Ajouter une clé d’accès"),
    (
        "Your passkey could not sign you in.",
        "Votre clé d’accès n’a pas pu vous connecter.",
    ),
    ("Sign in with", "Se connecter avec"),
    ("Applications", "Applications"),
    ("The secret of", "Le secret de"),
    (
        "copy it now: it is not shown again.",
        "copiez-le maintenant : il ne sera plus affiché.",
    ),
    (
        "Applications that sign people in",
        "Applications qui connectent les personnes",
    ),
    (
        "Each is an OpenID Connect client of this organisation's issuer.",
        "Chacune est un client OpenID Connect de l’émetteur de cette organisation.",
    ),
    ("Client id", "Identifiant client"),
    ("Kind", "Type"),
    ("Redirect URIs", "URI de redirection"),
    ("Grants", "Autorisations"),
    ("first party", "interne"),
    ("confidential", "confidentielle"),
    ("public", "publique"),
    ("New secret", "Nouveau secret"),
    ("No application yet.", "Aucune application pour l’instant."),
    ("Register an application", "Enregistrer une application"),
    (
        "Redirect URIs (one per line)",
        "URI de redirection (une par ligne)",
    ),
    ("Refresh tokens", "Jetons de rafraîchissement"),
    (
        "Client credentials (acts for itself)",
        "Identifiants client (agit pour elle-même)",
    ),
    (
        "First party (no consent screen)",
        "Interne (pas d’écran de consentement)",
    ),
    (
        "Other providers people sign in through",
        "Autres fournisseurs de connexion",
    ),
    ("Issuer", "Émetteur"),
    (
        "Redirect URI to register there",
        "URI de redirection à y enregistrer",
    ),
    ("E-mail domains", "Domaines de courriel"),
    ("New members", "Nouveaux membres"),
    ("any", "tous"),
    ("become members", "deviennent membres"),
    ("refused", "refusés"),
    (
        "No other provider yet.",
        "Aucun autre fournisseur pour l’instant.",
    ),
    (
        "Add or change a provider",
        "Ajouter ou modifier un fournisseur",
    ),
    ("Short name (in addresses)", "Nom court (dans les adresses)"),
    (
        "Name on the sign-in button",
        "Nom sur le bouton de connexion",
    ),
    ("Client id there", "Identifiant client chez lui"),
    (
        "Client secret there (left empty: unchanged)",
        "Secret client chez lui (vide : inchangé)",
    ),
    (
        "Only these e-mail domains (empty: any)",
        "Seulement ces domaines de courriel (vide : tous)",
    ),
    (
        "Unknown people become members",
        "Les personnes inconnues deviennent membres",
    ),
    ("Save the provider", "Enregistrer le fournisseur"),
    ("Actions", "Actions"),
    (
        "Sign-in through other providers",
        "Connexion par d’autres fournisseurs",
    ),
    ("linked", "associé"),
    ("Unlink", "Dissocier"),
    ("Link", "Associer"),
    (
        "Your organisation offers no other provider to sign in through.",
        "Votre organisation ne propose pas d’autre fournisseur de connexion.",
    ),
    (
        "No account of this organisation matches this sign-in. Sign in another way, or ask an administrator.",
        "Aucun compte de cette organisation ne correspond à cette connexion. Connectez-vous autrement, ou demandez à un administrateur.",
    ),
    (
        "The identity provider did not sign you in.",
        "Le fournisseur d’identité ne vous a pas connecté.",
    ),
    (
        "This sign-in could not be verified. Start again from the sign-in page.",
        "Cette connexion n’a pas pu être vérifiée. Recommencez depuis la page de connexion.",
    ),
    (
        "The identity provider cannot be reached right now. Try again in a moment, or sign in another way.",
        "Le fournisseur d’identité est injoignable pour le moment. Réessayez dans un instant, ou connectez-vous autrement.",
    ),
    (
        "This organisation offers no such sign-in.",
        "Cette organisation ne propose pas cette connexion.",
    ),
    (
        "This identity already signs in another account: unlink it there first.",
        "Cette identité connecte déjà un autre compte : dissociez-la d’abord de celui-ci.",
    ),
    (
        "Sign in with a passkey",
        "Se connecter avec une clé d’accès",
    ),
    ("Use a passkey instead", "Utiliser plutôt une clé d’accès"),
    ("The passkey was added.", "La clé d’accès a été ajoutée."),
    ("The passkey was removed.", "La clé d’accès a été retirée."),
    (
        "Passkeys need JavaScript: turn it on for this site, or sign in another way.",
        "Les clés d’accès ont besoin de JavaScript : activez-le pour ce site, ou connectez-vous autrement.",
    ),
    (
        "Give the passkey a name of 1 to 64 characters.",
        "Donnez à la clé d’accès un nom de 1 à 64 caractères.",
    ),
    (
        "To remove your last second factor, sign out and sign in again first (within 15 minutes).",
        "Pour retirer votre dernier second facteur, déconnectez-vous puis reconnectez-vous d’abord (dans les 15 minutes).",
    ),
    (
        "An organisation you belong to requires a second factor: add another before removing this one.",
        "Une organisation dont vous êtes membre exige un second facteur : ajoutez-en un autre avant de retirer celui-ci.",
    ),
];

static CATALOGUES: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| FRENCH.iter().copied().collect());

/// A page template's source in `lang`: each `{{ t("…") }}` of a literal text replaced by its
/// words in `lang` (HTML-escaped), and the layout it extends by the layout in `lang`. What is
/// left to translate while rendering is `t(…)` of a value (a title, a message).
pub fn localise(lang: Lang, source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{{ t(\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "{{ t(\"".len()..];
        match after.find("\") }}") {
            Some(end) => {
                out.push_str(&escape(translate(lang, &after[..end])));
                rest = &after[end + "\") }}".len()..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace(
        "{% extends \"layout.html\" %}",
        &format!("{{% extends \"{}/layout.html\" %}}", lang.tag()),
    )
    .replace("{% include \"", &format!("{{% include \"{}/", lang.tag()))
}

/// HTML-escapes text put into a template as it is (minijinja's escaping, and braces, so that a
/// translation can never read as template syntax).
fn escape(text: &str) -> String {
    minijinja::HtmlEscape(text)
        .to_string()
        .replace('{', "&#123;")
        .replace('}', "&#125;")
}

/// `english` in `lang`: the catalogue's words, or the English ones when it has none.
pub fn translate(lang: Lang, english: &str) -> &str {
    match lang {
        Lang::En => english,
        Lang::Fr => CATALOGUES.get(english).copied().unwrap_or(english),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_of_the_templates_has_its_french_and_the_catalogue_has_no_key_twice() {
        let mut keys = std::collections::BTreeSet::new();
        for (english, _) in FRENCH {
            assert!(keys.insert(*english), "{english} is in the catalogue twice");
        }
        let templates = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"))
            .expect("the templates folder");
        let mut missing = Vec::new();
        for entry in templates {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("a template");
            for piece in text.split("t(\"").skip(1) {
                let english = &piece[..piece.find("\")").expect("a closed t(\"…\")")];
                if !keys.contains(english) {
                    missing.push(format!("{}: {english}", path.display()));
                }
            }
        }
        assert!(missing.is_empty(), "without French: {missing:#?}");
    }

    #[test]
    fn a_template_is_localised_once_its_literal_texts_translated_and_escaped() {
        let source = "{% extends \"layout.html\" %}<a title=\"{{ t(\"Revoke the key\") }} {{ name }}\">{{ t(\"Sign in\") }}</a>{{ t(title) }}";
        assert_eq!(
            localise(Lang::Fr, source),
            "{% extends \"fr/layout.html\" %}<a title=\"Révoquer la clé {{ name }}\">Se connecter</a>{{ t(title) }}"
        );
        assert!(localise(Lang::En, "{{ t(\"Phone\") }} & {{ t(\"x\") }}").starts_with("Phone & x"));
        assert_eq!(
            escape("l’a \"b\" <c> {d}"),
            "l’a &quot;b&quot; &lt;c&gt; &#123;d&#125;"
        );
    }

    #[test]
    fn english_stays_and_unknown_text_passes_through() {
        assert_eq!(translate(Lang::En, "Sign in"), "Sign in");
        assert_eq!(translate(Lang::Fr, "Sign in"), "Se connecter");
        assert_eq!(translate(Lang::Fr, "Ada Lovelace"), "Ada Lovelace");
    }
}
