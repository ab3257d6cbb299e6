//! Chunks not worth asking about: tables of contents, indexes, copyright and license text,
//! navigation, in English and Spanish, hand-written and as PDF and web extraction leaves them;
//! and no false alarm on the prose, tables and lists of the fixture documents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use docraft_qa_gen::Reason;
use docraft_qa_gen::skip::classify;

fn reason(text: &str) -> Option<Reason> {
    classify(text, &[]).map(|s| s.reason)
}

const TOC_ES_LEADERS: &str = "ÍNDICE
Presentación ......................................................... 5
1. Introducción ..................................................... 7
1.1. Objeto y ámbito de aplicación ................................ 8
1.2. Marco normativo .............................................. 10
2. Clasificación de la información ............................... 13
2.1. Niveles de clasificación ..................................... 14
3. Almacenamiento y conservación ................................ 19
4. Destrucción .................................................... 24
Anexo I. Modelos de documento ................................... 27";

/// A PDF whose leader glyphs were not extracted: titles and page numbers only.
const TOC_ES_PLAIN: &str = "Índice
Presentación 5
1. Introducción 7
1.1. Objeto y ámbito de aplicación 8
1.2. Marco normativo 10
2. Clasificación de la información 13
2.1. Niveles de clasificación 14
3. Almacenamiento y conservación 19
Anexo I. Modelos de documento 27";

/// The second chunk of a long table of contents: no title, tab stops before the pages.
const TOC_EN_CONTINUED: &str = "4.3 Torque values for flange bolts\t31
4.4 Sensor alignment\t33
5 Calibration\t35
5.1 Reference instruments\t36
5.2 Three-point procedure\t38
6 Maintenance intervals\t41
6.1 Abrasive and corrosive media\t43
7 Safety\t45
7.1 Permit to work\t46
7.2 Incident reporting\t48";

const TOC_EN_SPACED_LEADERS: &str = "Contents
1 Purpose and scope . . . . . . . . . . . . . . . . . . . . . 1
2 Before a site visit . . . . . . . . . . . . . . . . . . . . 1
2.1 Scheduling . . . . . . . . . . . . . . . . . . . . . . . 1
2.2 Equipment checklist . . . . . . . . . . . . . . . . . . 2
3 Installation . . . . . . . . . . . . . . . . . . . . . . . 2
4 Calibration . . . . . . . . . . . . . . . . . . . . . . . 3
Preface . . . . . . . . . . . . . . . . . . . . . . . . . . . xi";

const INDEX_ES: &str = "Índice alfabético
acceso indebido, 22
almacenamiento, 14, 17–19
archivo de papel, 9, 14
cifrado, 18
copias de seguridad, 15, 31
destrucción, 24–25
inteligencia artificial, 20
nivel confidencial, 13, 18
nóminas, 13";

const COPYRIGHT_ES: &str = "© Cooperativa Agrícola del Valle del Jiloca, 2026
Todos los derechos reservados. Queda prohibida la reproducción total o parcial de esta obra por cualquier
medio sin la autorización previa y por escrito de los titulares del copyright.
Edita: Cooperativa Agrícola del Valle del Jiloca
Depósito legal: TE-123-2026
Impreso en España";

const COPYRIGHT_EN: &str = "Northwind Field Service Handbook
Copyright © 2026 Northwind Instruments B.V. All rights reserved.
No part of this publication may be reproduced, stored in a retrieval system or transmitted in any form
without the prior written permission of the publisher.
NW-300 and NW Config are registered trademarks of Northwind Instruments.
Printed in the Netherlands.";

const MIT: &str = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the \"Software\"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software. THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY.";

const GPL: &str = "This program is free software: you can redistribute it and/or modify it under the terms of the
GNU General Public License as published by the Free Software Foundation, either version 3 of the License, or
(at your option) any later version. This program is distributed in the hope that it will be useful, but
WITHOUT ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.";

const CC_ES: &str =
    "Esta obra está sujeta a una licencia Creative Commons Reconocimiento-NoComercial 4.0 Internacional.
Se permite copiar, distribuir y comunicar públicamente la obra siempre que se cite la fuente y no se haga un
uso comercial.";

const NAV_EN: &str = "Skip to main content
Home > Products > Flow meters > NW-300
[Products](/products)
[Support](/support)
[Downloads](/downloads)
[Contact us](/contact)
Search
Log in";

const NAV_ES: &str = "Ir al contenido principal
Inicio
Quiénes somos
Servicios
Socias y socios
Noticias
Documentación
Contacto
Aviso legal
Política de privacidad";

const LINKS_ES: &str = "## Enlaces útiles

- [Portal del empleado](https://intranet.example/portal)
- [Solicitud de vacaciones](https://intranet.example/vacaciones)
- [Directorio telefónico](https://intranet.example/directorio)
- [Normativa interna](https://intranet.example/normativa)
- https://intranet.example/ayuda";

#[test]
fn tables_of_contents_and_indexes() {
    for (name, text) in [
        ("es leaders", TOC_ES_LEADERS),
        ("es plain", TOC_ES_PLAIN),
        ("en continued", TOC_EN_CONTINUED),
        ("en spaced leaders", TOC_EN_SPACED_LEADERS),
        ("es index", INDEX_ES),
    ] {
        let skip = classify(text, &[]);
        assert_eq!(skip.as_ref().map(|s| s.reason), Some(Reason::Toc), "{name}: {skip:?}");
        assert!(!skip.unwrap().detail.is_empty());
    }
    // A title in the heading path counts like one in the text: two entries are then enough.
    let tail = "Anexo II. Formularios 31\nAnexo III. Glosario 35\nAnexo IV. Direcciones de contacto 38\n\
                Última revisión: enero de 2026.";
    assert_eq!(reason(tail), None);
    assert_eq!(classify(tail, &["Índice".to_string()]).map(|s| s.reason), Some(Reason::Toc));
}

#[test]
fn copyright_and_license_boilerplate() {
    for (name, text) in
        [("es copyright", COPYRIGHT_ES), ("en copyright", COPYRIGHT_EN), ("mit", MIT), ("gpl", GPL), ("cc es", CC_ES)]
    {
        let skip = classify(text, &[]);
        assert_eq!(skip.as_ref().map(|s| s.reason), Some(Reason::Boilerplate), "{name}: {skip:?}");
    }
    let detail = classify(COPYRIGHT_ES, &[]).unwrap().detail;
    assert!(detail.contains("todos los derechos reservados") && detail.contains('©'), "{detail}");
}

#[test]
fn navigation_menus_breadcrumbs_and_link_lists() {
    for (name, text) in [("en", NAV_EN), ("es menu", NAV_ES), ("es links", LINKS_ES)] {
        let skip = classify(text, &[]);
        assert_eq!(skip.as_ref().map(|s| s.reason), Some(Reason::Navigation), "{name}: {skip:?}");
    }
}

/// Prose that brushes against each rule: a list, a quantity table, a date line, a copyright
/// footer, licences mentioned in a policy, a link inside a sentence.
#[test]
fn prose_tables_and_lists_are_kept() {
    let cases = [
        "Las copias de seguridad se hacen cada noche. Para recuperar un archivo:\n\n1. Haz clic derecho sobre el \
         archivo.\n2. Abre la pestaña Versiones anteriores.\n3. Elige la fecha y pulsa Restaurar.",
        "Item\tQuantity\nReference flow calibrator FC-20\t1\nTorque wrench, 5–25 Nm\t1\nSpare gasket set G-300\t2\n\
         Laptop with NW Config 7.2\t1\nPersonal protective equipment\t1",
        "Revision 4, March 2026\n\nThis handbook describes how Northwind field engineers install, calibrate and \
         maintain the NW-300 series of flow meters at customer sites.",
        "Meters installed in abrasive or corrosive media are inspected every six months instead of every twelve. \
         The inspection covers the sensor head and the gaskets.\n© 2026 Northwind Instruments",
        "Todo el software instalado en los equipos de la cooperativa debe contar con licencia. El responsable de \
         sistemas guarda las licencias y comprueba cada año que siguen vigentes.",
        "The current template is in the document management system; see [the guide](guide.md) for how to open \
         it from a tablet in the field.",
        "Asistentes: Dña. Begoña Ibáñez (presidenta), D. Joaquín Peña, Dña. Lucía Martín y D. Ramón Sáez.",
        "Sin más asuntos que tratar, se levanta la sesión a las 12:40.",
    ];
    for text in cases {
        assert_eq!(classify(text, &[]), None, "{text}");
    }
}

/// Every chunk of the fixture documents (`docraft ingest fixtures/docs`, saved with its
/// source, index, headings and text in `tests/data/fixture-chunks.jsonl`): PDF prose and
/// tables, Markdown with lists, tables and code, plain text, six scripts. None is skipped.
#[test]
fn no_fixture_chunk_is_skipped() {
    let data =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fixture-chunks.jsonl")).unwrap();
    let mut n = 0;
    for line in data.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let headings: Vec<String> =
            v["headings"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
        let skip = classify(text, &headings);
        assert_eq!(skip, None, "{} #{}: {text}", v["source"], v["chunk_index"]);
        n += 1;
    }
    assert_eq!(n, 20, "all the fixture chunks were read");
}
